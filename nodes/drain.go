package nodes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mastershrink/mastershrink/internal/heartbeat"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// maxInFlight bounds concurrent API calls of one drain, on top of client-go's rate limiter.
const maxInFlight = 32

// Drain cordons the nodes, guards multi-replica controllers with temporary PDBs, checks that
// the drain can succeed, and evicts the pods through the Eviction API (never deleting around
// a PDB), waiting for each to be gone. A node confirmed down has its pods deleted instead,
// only with opts.DeletePodsOfDownNode. Nothing is evicted when a pod is refused or the
// remaining nodes lack room: the error wraps ErrRefused and the cordons are undone.
// Evictions still pending at a timeout make the error wrap ErrBlocked.
func Drain(ctx context.Context, kube kubernetes.Interface, nodeNames []string, opts DrainOptions) (Summary, error) {
	if opts.OperationID == "" {
		opts.OperationID = newOperationID()
	}
	if opts.PDBMaxUnavailable == "" {
		opts.PDBMaxUnavailable = "25%"
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.GlobalTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.GlobalTimeout)
		defer cancel()
	}
	d := &drainer{kube: kube, opts: opts, out: opts.Progress, start: time.Now()}
	sum := Summary{OperationID: opts.OperationID}

	// Cordon first so no pod lands on the nodes between the observation and the evictions.
	var cordoned []string
	for _, name := range nodeNames {
		changed, err := Cordon(ctx, kube, name)
		if apierrors.IsNotFound(err) {
			d.logf("node %s: not found, nothing to drain", name)
			continue
		}
		if err != nil {
			d.uncordon(cordoned)
			return sum, err
		}
		if changed {
			cordoned = append(cordoned, name)
			d.logf("node %s: cordoned", name)
		}
	}
	w, err := observe(ctx, kube, nodeNames)
	if err != nil {
		d.uncordon(cordoned)
		return sum, err
	}
	verdicts := map[*podInfo]Pod{}
	refused := 0
	for _, name := range nodeNames {
		n := w.nodes[name]
		if n == nil {
			continue
		}
		ns := NodeSummary{Node: name, Down: !nodeReady(n)}
		for _, pi := range w.pods[name] {
			v := Classify(pi.fact, opts)
			verdicts[pi] = v
			switch v.Verdict {
			case VerdictSkip:
				ns.Skipped = append(ns.Skipped, v)
			case VerdictRefuse:
				ns.Refused = append(ns.Refused, v)
				refused++
				d.logf("node %s: refuse %s/%s: %s (%s)", name, v.Namespace, v.Name, v.Reason, v.Hint)
			}
		}
		sum.Nodes = append(sum.Nodes, ns)
	}
	if refused > 0 {
		d.uncordon(cordoned)
		return sum, fmt.Errorf("drain %s: %d pods cannot be evicted safely: %w", strings.Join(nodeNames, ","), refused, ErrRefused)
	}
	notes, err := preflight(ctx, kube, w, verdicts)
	sum.Preflight = notes
	for _, n := range notes {
		d.logf("preflight: %s", n)
	}
	if err != nil {
		d.uncordon(cordoned)
		return sum, err
	}

	// The guard is removed whatever happens next, with a context of its own: the drain's may
	// be the one that expired.
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		removed, err := RemoveTemporaryPDBs(rctx, kube, opts.OperationID)
		for _, r := range removed {
			d.logf("removed temporary pdb %s", r)
		}
		if err != nil {
			sum.RemoveErr = err.Error()
		}
	}()
	made, err := createTempPDBs(ctx, kube, guardTargets(w, verdicts), opts.PDBMaxUnavailable, opts.OperationID)
	sum.TempPDBs = made
	for _, m := range made {
		d.logf("created temporary pdb %s (maxUnavailable %s, operation %s)", m, opts.PDBMaxUnavailable, opts.OperationID)
	}
	if err != nil {
		return sum, err
	}

	stopBeat := d.heartbeat(ctx)
	defer stopBeat()
	var wg sync.WaitGroup
	errs := make([]error, len(sum.Nodes))
	for i := range sum.Nodes {
		ns := &sum.Nodes[i]
		var pods []*podInfo
		for _, pi := range w.pods[ns.Node] {
			if verdicts[pi].Verdict == VerdictEvict {
				pods = append(pods, pi)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.drainNode(ctx, w.nodes[ns.Node], pods, ns)
		}()
	}
	wg.Wait()
	return sum, joinErrs(errs)
}

type drainer struct {
	kube    kubernetes.Interface
	opts    DrainOptions
	start   time.Time
	mu      sync.Mutex
	out     io.Writer
	pending int
	sem     chan struct{}
	once    sync.Once
}

func (d *drainer) logf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, format+"\n", args...)
}

func (d *drainer) addPending(n int) {
	d.mu.Lock()
	d.pending += n
	d.mu.Unlock()
}

// call runs one API request under the drain's concurrency bound.
func (d *drainer) call(f func() error) error {
	d.once.Do(func() { d.sem = make(chan struct{}, maxInFlight) })
	d.sem <- struct{}{}
	defer func() { <-d.sem }()
	return f()
}

func (d *drainer) heartbeat(ctx context.Context) func() {
	return heartbeat.Start(ctx, 10*time.Second, func(time.Duration) {
		d.mu.Lock()
		n := d.pending
		d.mu.Unlock()
		d.logf("still draining: %d pods to go [%s elapsed]", n, time.Since(d.start).Round(time.Second))
	})
}

func (d *drainer) uncordon(names []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range names {
		if _, err := Uncordon(ctx, d.kube, n); err == nil {
			d.logf("node %s: uncordoned (nothing was evicted)", n)
		} else {
			d.logf("node %s: could not undo the cordon: %v", n, err)
		}
	}
}

func (d *drainer) drainNode(ctx context.Context, node *corev1.Node, pods []*podInfo, ns *NodeSummary) error {
	if d.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.opts.Timeout)
		defer cancel()
	}
	if len(pods) == 0 {
		d.logf("node %s: drained (nothing to evict)", node.Name)
		return nil
	}
	d.addPending(len(pods))
	tr := newTracker(d.kube, node.Name)
	go tr.run(ctx)
	var mu sync.Mutex
	record := func(f func()) { mu.Lock(); f(); mu.Unlock() }
	if ns.Down {
		if err := d.confirmDown(ctx, node); err != nil {
			for _, pi := range pods {
				ns.Blocked = append(ns.Blocked, Blocked{Pod: podName(&pi.pod), Reason: err.Error()})
			}
			return fmt.Errorf("node %s: %w: %w", node.Name, err, ErrBlocked)
		}
	}
	var wg sync.WaitGroup
	for _, pi := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer d.addPending(-1)
			name := podName(&pi.pod)
			var err error
			if ns.Down {
				err = d.deletePod(ctx, tr, pi)
			} else {
				err = d.evictPod(ctx, tr, node.Name, pi)
			}
			record(func() {
				switch {
				case err != nil:
					ns.Blocked = append(ns.Blocked, Blocked{Pod: name, Reason: err.Error()})
				case ns.Down:
					ns.Deleted = append(ns.Deleted, name)
				default:
					ns.Evicted = append(ns.Evicted, name)
				}
			})
		}()
	}
	wg.Wait()
	sort.Strings(ns.Evicted)
	sort.Strings(ns.Deleted)
	sort.Slice(ns.Blocked, func(i, j int) bool { return ns.Blocked[i].Pod < ns.Blocked[j].Pod })
	if len(ns.Blocked) > 0 {
		return fmt.Errorf("node %s: %d pods not removed (first: %s: %s): %w", node.Name, len(ns.Blocked), ns.Blocked[0].Pod, ns.Blocked[0].Reason, ErrBlocked)
	}
	d.logf("node %s: drained", node.Name)
	return nil
}

// confirmDown waits until the node's lease has expired, so that a kubelet which is merely
// slow to report does not see its running pods force-deleted under it.
func (d *drainer) confirmDown(ctx context.Context, node *corev1.Node) error {
	for {
		lease, err := d.kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, node.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			d.logf("node %s: down (NotReady, no lease)", node.Name)
			return nil
		case err == nil && leaseExpired(lease, time.Now()):
			d.logf("node %s: down (NotReady, lease expired): deleting its pods", node.Name)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s is NotReady but its lease is still renewed: not confirmed down", node.Name)
		case <-time.After(time.Second):
		}
	}
}

func leaseExpired(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.RenewTime == nil {
		return true
	}
	dur := 40 * time.Second
	if l.Spec.LeaseDurationSeconds != nil {
		dur = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return now.After(l.Spec.RenewTime.Add(dur))
}

func (d *drainer) deletePod(ctx context.Context, tr *tracker, pi *podInfo) error {
	zero := int64(0)
	uid := pi.pod.UID
	name := podName(&pi.pod)
	err := d.call(func() error {
		return d.kube.CoreV1().Pods(pi.pod.Namespace).Delete(ctx, pi.pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid},
		})
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete pod %s: %w", name, err)
	}
	if err := tr.wait(ctx, uid); err != nil {
		return fmt.Errorf("deleted but still present: %w", err)
	}
	d.logf("deleted pod %s (node down, grace 0)", name)
	return nil
}

// evictPod asks the Eviction API until it agrees, then waits for the pod to be gone. A 429
// means a PDB allows no disruption now: retry with backoff until the context ends.
func (d *drainer) evictPod(ctx context.Context, tr *tracker, node string, pi *podInfo) error {
	name := podName(&pi.pod)
	uid := pi.pod.UID
	ev := &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Name: pi.pod.Name, Namespace: pi.pod.Namespace},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}},
	}
	if d.opts.GracePeriodSeconds > 0 {
		gp := d.opts.GracePeriodSeconds
		ev.DeleteOptions.GracePeriodSeconds = &gp
	}
	d.logf("node %s: evicting pod %s", node, name)
	backoff := 250 * time.Millisecond
	lastWait, lastSaid := "", time.Time{}
	var last error
	for {
		// client-go retries a 429 carrying Retry-After by itself: only ctx bounds that.
		err := d.call(func() error { return d.kube.PolicyV1().Evictions(pi.pod.Namespace).Evict(ctx, ev) })
		switch {
		case err == nil:
			if werr := tr.wait(ctx, uid); werr != nil {
				return fmt.Errorf("evicted but not gone: %w", werr)
			}
			d.logf("node %s: evicted pod %s", node, name)
			return nil
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			// Gone already, or replaced by a pod of the same name (UID precondition).
			return nil
		case apierrors.IsTooManyRequests(err):
			why := d.pdbBlock(ctx, &pi.pod, err)
			if why != lastWait || time.Since(lastSaid) > 10*time.Second {
				d.logf("node %s: %s: pod %s", node, why, name)
				lastWait, lastSaid = why, time.Now()
			}
			last = errors.New(why)
		default:
			if ctx.Err() != nil {
				break
			}
			last = err
			d.logf("node %s: evict pod %s: %v (retrying)", node, name, err)
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("%w (%w)", last, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// pdbBlock names the PDB holding a pod back, with its current disruptionsAllowed.
func (d *drainer) pdbBlock(ctx context.Context, pod *corev1.Pod, err error) string {
	var names []string
	var se apierrors.APIStatus
	if errors.As(err, &se) && se.Status().Details != nil {
		for _, c := range se.Status().Details.Causes {
			// "The disruption budget web needs 3 healthy pods and has 3 currently"
			if c.Type == policyv1.DisruptionBudgetCause {
				if rest, ok := strings.CutPrefix(c.Message, "The disruption budget "); ok {
					names = append(names, strings.Fields(rest)[0])
				}
			}
		}
	}
	if len(names) == 0 {
		list, lerr := d.kube.PolicyV1().PodDisruptionBudgets(pod.Namespace).List(ctx, metav1.ListOptions{})
		if lerr == nil {
			for _, p := range coveringPDBs(list.Items, pod) {
				names = append(names, p.Name)
			}
		}
	}
	if len(names) == 0 {
		return "waiting for the eviction API (429: " + err.Error() + ")"
	}
	var parts []string
	for _, n := range names {
		p, gerr := d.kube.PolicyV1().PodDisruptionBudgets(pod.Namespace).Get(ctx, n, metav1.GetOptions{})
		if gerr != nil {
			parts = append(parts, fmt.Sprintf("%s/%s", pod.Namespace, n))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s/%s (disruptionsAllowed=%d)", pod.Namespace, n, p.Status.DisruptionsAllowed))
	}
	return "waiting for PDB " + strings.Join(parts, ", ")
}

// preflight notes the PDBs that will hold evictions back and refuses when the schedulable
// nodes that remain cannot take the pods that controllers will recreate.
func preflight(ctx context.Context, kube kubernetes.Interface, w *world, verdicts map[*podInfo]Pod) ([]string, error) {
	var notes []string
	covered := map[string]int{}
	var needPods int64
	needCPU, needMem := resource.Quantity{}, resource.Quantity{}
	for _, pis := range w.pods {
		for _, pi := range pis {
			if verdicts[pi].Verdict != VerdictEvict || pi.fact.Finished || pi.ctrl == nil {
				continue
			}
			needPods++
			cpu, mem := podRequests(&pi.pod)
			needCPU.Add(cpu)
			needMem.Add(mem)
			for _, p := range coveringPDBs(w.pdbs, &pi.pod) {
				covered[p.Namespace+"/"+p.Name]++
			}
		}
	}
	for _, p := range w.pdbs {
		k := p.Namespace + "/" + p.Name
		if n := covered[k]; n > 0 && int(p.Status.DisruptionsAllowed) < n {
			notes = append(notes, fmt.Sprintf("PDB %s allows %d disruptions now and covers %d pods to evict: evictions wait for replacements to be ready", k, p.Status.DisruptionsAllowed, n))
		}
	}
	sort.Strings(notes)
	if needPods == 0 {
		return notes, nil
	}
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return notes, fmt.Errorf("list nodes: %w", err)
	}
	free := map[string]*[3]resource.Quantity{}
	var freePods int64
	for _, n := range nodes.Items {
		if _, draining := w.nodes[n.Name]; draining || n.Spec.Unschedulable || !nodeReady(&n) || hasHardTaint(&n) {
			continue
		}
		a := n.Status.Allocatable
		free[n.Name] = &[3]resource.Quantity{a.Pods().DeepCopy(), a.Cpu().DeepCopy(), a.Memory().DeepCopy()}
	}
	if len(free) > 0 {
		pods, err := kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{
			FieldSelector: fields.AndSelectors(
				fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
				fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed))).String(),
		})
		if err != nil {
			return notes, fmt.Errorf("list pods: %w", err)
		}
		for _, p := range pods.Items {
			f := free[p.Spec.NodeName]
			if f == nil {
				continue
			}
			cpu, mem := podRequests(&p)
			f[0].Sub(*resource.NewQuantity(1, resource.DecimalSI))
			f[1].Sub(cpu)
			f[2].Sub(mem)
		}
	}
	var freeCPU, freeMem resource.Quantity
	for _, f := range free {
		freePods += max(f[0].Value(), 0)
		if f[1].Sign() > 0 {
			freeCPU.Add(f[1])
		}
		if f[2].Sign() > 0 {
			freeMem.Add(f[2])
		}
	}
	room := fmt.Sprintf("%d schedulable nodes remain with room for %d pods, %s CPU, %s memory; %d pods, %s CPU, %s memory to place",
		len(free), freePods, freeCPU.String(), freeMem.String(), needPods, needCPU.String(), needMem.String())
	notes = append(notes, room)
	if freePods < needPods || freeCPU.Cmp(needCPU) < 0 || freeMem.Cmp(needMem) < 0 {
		return notes, fmt.Errorf("not enough room on the remaining nodes: %s: %w", room, ErrRefused)
	}
	return notes, nil
}

func hasHardTaint(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			return true
		}
	}
	return false
}

func podRequests(p *corev1.Pod) (cpu, mem resource.Quantity) {
	for _, c := range p.Spec.Containers {
		if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
			cpu.Add(q)
		}
		if q, ok := c.Resources.Requests[corev1.ResourceMemory]; ok {
			mem.Add(q)
		}
	}
	return cpu, mem
}

// tracker learns which pods of a node still exist with one List per round, so waiting for
// hundreds of pods costs one request per half second, not one per pod.
type tracker struct {
	kube    kubernetes.Interface
	node    string
	mu      sync.Mutex
	waiters map[types.UID][]chan struct{}
	kick    chan struct{}
}

func newTracker(kube kubernetes.Interface, node string) *tracker {
	return &tracker{kube: kube, node: node, waiters: map[types.UID][]chan struct{}{}, kick: make(chan struct{}, 1)}
}

func (t *tracker) wait(ctx context.Context, uid types.UID) error {
	ch := make(chan struct{})
	t.mu.Lock()
	t.waiters[uid] = append(t.waiters[uid], ch)
	t.mu.Unlock()
	select {
	case t.kick <- struct{}{}:
	default:
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pod still present: %w", ctx.Err())
	}
}

func (t *tracker) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.kick:
		case <-time.After(500 * time.Millisecond):
		}
		t.mu.Lock()
		n := len(t.waiters)
		t.mu.Unlock()
		if n == 0 {
			continue
		}
		list, err := t.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("spec.nodeName", t.node).String(),
		})
		if err != nil {
			continue
		}
		present := map[types.UID]bool{}
		for _, p := range list.Items {
			present[p.UID] = true
		}
		t.mu.Lock()
		for uid, chs := range t.waiters {
			if !present[uid] {
				for _, ch := range chs {
					close(ch)
				}
				delete(t.waiters, uid)
			}
		}
		t.mu.Unlock()
		// Pace the rounds even when many waiters kick at once.
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func podName(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

func newOperationID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "drain-" + time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

func joinErrs(errs []error) error {
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}
