package nodes

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// Annotations and labels mastershrink puts on the objects it creates.
const (
	AnnotationOperationID = "mastershrink.io/operation-id"
	LabelManagedBy        = "app.kubernetes.io/managed-by"
	managedByValue        = "mastershrink"
	annotationMirror      = "kubernetes.io/config.mirror"
)

// controller is a pod's controlling object, with what the guard and the classification need.
type controller struct {
	Kind, Namespace, Name string
	Replicas              int32
	Selector              *metav1.LabelSelector
	Gone                  bool
}

func (c *controller) key() string { return c.Namespace + "/" + c.Kind + "/" + c.Name }

type podInfo struct {
	pod  corev1.Pod
	fact Pod
	ctrl *controller
}

// world is one observation of the nodes to drain.
type world struct {
	nodes map[string]*corev1.Node
	pods  map[string][]*podInfo
	pdbs  []policyv1.PodDisruptionBudget
}

// Observe returns the named Nodes with their pods classified under DefaultDrainOptions, and
// the PDBs of the namespaces those pods live in. A name that is not a Node is left out.
func Observe(ctx context.Context, kube kubernetes.Interface, nodeNames []string) ([]Node, []PDB, error) {
	w, err := observe(ctx, kube, nodeNames)
	if err != nil {
		return nil, nil, err
	}
	opts := DefaultDrainOptions()
	var out []Node
	for _, name := range nodeNames {
		n := w.nodes[name]
		if n == nil {
			continue
		}
		node := nodeFacts(n)
		for _, pi := range w.pods[name] {
			node.Pods = append(node.Pods, Classify(pi.fact, opts))
		}
		out = append(out, node)
	}
	var pdbs []PDB
	for _, p := range w.pdbs {
		pdbs = append(pdbs, pdbFacts(&p))
	}
	return out, pdbs, nil
}

func nodeFacts(n *corev1.Node) Node {
	node := Node{Name: n.Name, Ready: nodeReady(n), Unschedulable: n.Spec.Unschedulable}
	for _, t := range n.Spec.Taints {
		s := t.Key
		if t.Value != "" {
			s += "=" + t.Value
		}
		node.Taints = append(node.Taints, s+":"+string(t.Effect))
	}
	node.Addresses = nodeAddresses(n)
	for k := range n.Labels {
		if role, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok && role != "" {
			node.Roles = append(node.Roles, role)
		}
	}
	sort.Strings(node.Roles)
	return node
}

func pdbFacts(p *policyv1.PodDisruptionBudget) PDB {
	out := PDB{
		Namespace: p.Namespace, Name: p.Name,
		DisruptionsAllowed: p.Status.DisruptionsAllowed, CurrentHealthy: p.Status.CurrentHealthy,
		DesiredHealthy: p.Status.DesiredHealthy, ExpectedPods: p.Status.ExpectedPods,
		OperationID: p.Annotations[AnnotationOperationID],
	}
	if p.Spec.Selector != nil {
		out.Selector = metav1.FormatLabelSelector(p.Spec.Selector)
	}
	if p.Spec.MinAvailable != nil {
		out.MinAvailable = p.Spec.MinAvailable.String()
	}
	if p.Spec.MaxUnavailable != nil {
		out.MaxUnavailable = p.Spec.MaxUnavailable.String()
	}
	return out
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func observe(ctx context.Context, kube kubernetes.Interface, nodeNames []string) (*world, error) {
	w := &world{nodes: map[string]*corev1.Node{}, pods: map[string][]*podInfo{}}
	owners := map[string]*controller{}
	namespaces := map[string]bool{}
	for _, name := range nodeNames {
		n, err := kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get node %s: %w", name, err)
		}
		w.nodes[name] = n
		list, err := kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("spec.nodeName", name).String(),
		})
		if err != nil {
			return nil, fmt.Errorf("list pods of node %s: %w", name, err)
		}
		sort.Slice(list.Items, func(i, j int) bool {
			a, b := list.Items[i], list.Items[j]
			return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
		})
		down := !nodeReady(n)
		for i := range list.Items {
			pod := list.Items[i]
			pi := &podInfo{pod: pod}
			pi.fact = Pod{
				Namespace: pod.Namespace, Name: pod.Name,
				Finished: pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed,
				NodeDown: down,
			}
			_, pi.fact.Mirror = pod.Annotations[annotationMirror]
			for _, v := range pod.Spec.Volumes {
				if v.EmptyDir != nil {
					pi.fact.EmptyDir = true
				}
			}
			if ref := metav1.GetControllerOf(&pod); ref != nil {
				pi.fact.Owner = ref.Kind + "/" + ref.Name
				c, err := lookupController(ctx, kube, owners, pod.Namespace, ref)
				if err != nil {
					return nil, err
				}
				pi.ctrl = c
				pi.fact.Replicas = c.Replicas
				pi.fact.OwnerGone = c.Gone && c.Kind == "DaemonSet"
			}
			namespaces[pod.Namespace] = true
			w.pods[name] = append(w.pods[name], pi)
		}
	}
	if len(namespaces) > 0 {
		list, err := kube.PolicyV1().PodDisruptionBudgets("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list pod disruption budgets: %w", err)
		}
		for _, p := range list.Items {
			if namespaces[p.Namespace] {
				w.pdbs = append(w.pdbs, p)
			}
		}
	}
	for _, pis := range w.pods {
		for _, pi := range pis {
			pi.fact.HasPDB = len(coveringPDBs(w.pdbs, &pi.pod)) > 0
		}
	}
	return w, nil
}

// coveringPDBs returns the PDBs whose selector matches the pod.
func coveringPDBs(pdbs []policyv1.PodDisruptionBudget, pod *corev1.Pod) []*policyv1.PodDisruptionBudget {
	var out []*policyv1.PodDisruptionBudget
	for i := range pdbs {
		p := &pdbs[i]
		if p.Namespace != pod.Namespace || p.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func lookupController(ctx context.Context, kube kubernetes.Interface, cache map[string]*controller, ns string, ref *metav1.OwnerReference) (*controller, error) {
	c := &controller{Kind: ref.Kind, Namespace: ns, Name: ref.Name}
	if got, ok := cache[c.key()]; ok {
		return got, nil
	}
	cache[c.key()] = c
	var err error
	switch ref.Kind {
	case "ReplicaSet":
		x, e := kube.AppsV1().ReplicaSets(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		err = e
		if e == nil {
			c.Replicas, c.Selector = replicas(x.Spec.Replicas), x.Spec.Selector
		}
	case "StatefulSet":
		x, e := kube.AppsV1().StatefulSets(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		err = e
		if e == nil {
			c.Replicas, c.Selector = replicas(x.Spec.Replicas), x.Spec.Selector
		}
	case "DaemonSet":
		_, err = kube.AppsV1().DaemonSets(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	case "ReplicationController":
		x, e := kube.CoreV1().ReplicationControllers(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		err = e
		if e == nil {
			c.Replicas = replicas(x.Spec.Replicas)
			c.Selector = &metav1.LabelSelector{MatchLabels: x.Spec.Selector}
		}
	case "CloneSet":
		err = getCloneSet(ctx, kube, ref, c)
	default:
		return c, nil
	}
	if apierrors.IsNotFound(err) {
		c.Gone = true
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get %s %s/%s: %w", ref.Kind, ns, ref.Name, err)
	}
	return c, nil
}

// getCloneSet reads an OpenKruise CloneSet without its client library: the API may not exist.
func getCloneSet(ctx context.Context, kube kubernetes.Interface, ref *metav1.OwnerReference, c *controller) error {
	rc := kube.Discovery().RESTClient()
	if rc == nil || !strings.HasPrefix(ref.APIVersion, "apps.kruise.io/") {
		return nil
	}
	raw, err := rc.Get().AbsPath("/apis", ref.APIVersion, "namespaces", c.Namespace, "clonesets", c.Name).DoRaw(ctx)
	if err != nil {
		return err
	}
	var cs struct {
		Spec struct {
			Replicas *int32                `json:"replicas"`
			Selector *metav1.LabelSelector `json:"selector"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(raw, &cs); err != nil {
		return fmt.Errorf("decode cloneset %s/%s: %w", c.Namespace, c.Name, err)
	}
	c.Replicas, c.Selector = replicas(cs.Spec.Replicas), cs.Spec.Selector
	return nil
}

func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}
