package nodes_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/nodes"
	"github.com/mastershrink/mastershrink/testenv"
	"github.com/mastershrink/mastershrink/testenv/kubetest"
	"github.com/mastershrink/mastershrink/testenv/seed"
)

// One lab for the package's lab tests (3 masters with real apiservers and controller-managers,
// 4 kwok workers), brought up by the first test that asks and torn down after the last.
// The drain tests use w1..w3 and give back each Node they take; the cleanup test spends w4.
var (
	labOnce sync.Once
	lab     *testenv.Lab
	labErr  error
	labDown = func() {}
)

func TestMain(m *testing.M) {
	code := m.Run()
	labDown()
	os.Exit(code)
}

func sharedLab(t *testing.T) *testenv.Lab {
	t.Helper()
	testenv.RequireLab(t)
	labOnce.Do(func() {
		lab, labDown, labErr = testenv.Shared(testenv.Options{Masters: 3, Workers: 4})
	})
	if labErr != nil {
		t.Fatal(labErr)
	}
	return lab
}

func labKube(t *testing.T, l *testenv.Lab) kubernetes.Interface {
	t.Helper()
	cfg, err := l.RESTConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return kube
}

// poll calls f until it says done or the deadline passes, then fails with what f said last.
func poll(t *testing.T, ctx context.Context, d time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		ok, last := f()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last: %s)", what, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func waitNodeReady(t *testing.T, ctx context.Context, kube kubernetes.Interface, name string, want bool) {
	t.Helper()
	poll(t, ctx, 3*time.Minute, fmt.Sprintf("node %s Ready=%t", name, want), func() (bool, string) {
		n, err := kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return (c.Status == corev1.ConditionTrue) == want, string(c.Status) + ": " + c.Message
			}
		}
		return !want, "no Ready condition"
	})
}

// giveBack restarts a worker's kwok, whose start re-creates its Node, so the next test finds
// the lab as it was.
func giveBack(t *testing.T, l *testenv.Lab, kube kubernetes.Interface, worker string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := l.Exec(ctx, worker, "systemctl", "restart", "kubelet"); err != nil {
		t.Errorf("restart kwok on %s: %v: %s", worker, err, out)
		return
	}
	waitNodeReady(t, ctx, kube, worker, true)
	if _, err := nodes.Uncordon(ctx, kube, worker); err != nil {
		t.Errorf("uncordon %s: %v", worker, err)
	}
}

func TestLabDrain(t *testing.T) {
	l := sharedLab(t)
	kube := labKube(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	workers := []string{"w1", "w2", "w3"}
	for _, w := range workers {
		waitNodeReady(t, ctx, kube, w, true)
		poll(t, ctx, time.Minute, "the node lease of "+w, func() (bool, string) {
			_, err := kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, w, metav1.GetOptions{})
			return err == nil, fmt.Sprint(err)
		})
	}
	const ns = "labdrain"
	// The lab's apiservers admit pods only once their namespace has its ServiceAccount.
	if err := seed.EnsureNamespace(ctx, kube, ns); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, time.Minute, "the default ServiceAccount of "+ns, func() (bool, string) {
		_, err := kube.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	w, err := seed.SeedWorkloads(ctx, kube, ns, workers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	consent := nodes.DrainOptions{IgnoreDaemonSets: true, Force: true, DeleteEmptyDirData: true, Timeout: 3 * time.Minute}

	t.Run("single replica refused", func(t *testing.T) { refusesSingleReplica(t, ctx, kube, w, consent) })
	if t.Failed() {
		return
	}
	consent.AllowSingleReplica = true

	// A node with web pods (held by their PDB) and api pods (guarded by a temporary PDB).
	target := kubetest.NodeRunning(t, ctx, kube, ns, workers, w.Web, w.API)

	t.Run("PDB honoured, temporary PDBs created and removed, Node deleted", func(t *testing.T) {
		t.Cleanup(func() { giveBack(t, l, kube, target) })
		// Only the 4 web pods there are count: the disruption controller computes 0 allowed.
		patchPDB(t, ctx, kube, ns, w.Web, `{"spec":{"maxUnavailable":null,"minAvailable":4}}`)
		allowed := func() (int32, error) {
			p, err := kube.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, w.Web, metav1.GetOptions{})
			if err != nil {
				return 0, err
			}
			if p.Status.ObservedGeneration < p.Generation {
				return 0, fmt.Errorf("generation %d not observed yet", p.Generation)
			}
			return p.Status.DisruptionsAllowed, nil
		}
		poll(t, ctx, time.Minute, "web PDB to allow 0 disruptions", func() (bool, string) {
			n, err := allowed()
			return err == nil && n == 0, fmt.Sprint(n, err)
		})
		opts := consent
		opts.OperationID = "lab-honour"
		sum := drainPastPDB(t, ctx, kube, w, target, opts, ns, func() {
			// While held back: the guard of the api ReplicaSet exists, marked with the operation,
			// and no web pod is going.
			guards, err := kube.PolicyV1().PodDisruptionBudgets(ns).List(ctx, metav1.ListOptions{LabelSelector: nodes.LabelManagedBy + "=mastershrink"})
			if err != nil {
				t.Fatal(err)
			}
			var guardNames []string
			for _, p := range guards.Items {
				if p.Annotations[nodes.AnnotationOperationID] != "lab-honour" {
					t.Errorf("temporary PDB %s lacks the operation ID: %v", p.Name, p.Annotations)
				}
				if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.String() != "25%" {
					t.Errorf("temporary PDB %s: maxUnavailable %v, want 25%%", p.Name, p.Spec.MaxUnavailable)
				}
				guardNames = append(guardNames, p.Name)
			}
			if !slices.ContainsFunc(guardNames, func(s string) bool { return strings.HasPrefix(s, w.API+"-") }) {
				t.Errorf("no temporary PDB guards the api ReplicaSet during the drain: %v", guardNames)
			}
		})
		if !slices.ContainsFunc(sum.TempPDBs, func(s string) bool { return strings.HasPrefix(s, ns+"/"+w.API+"-") }) {
			t.Errorf("summary does not list the api guard: %v", sum.TempPDBs)
		}
		deleteNode(t, ctx, kube, target)
	})
	if t.Failed() {
		return
	}

	t.Run("NotReady node handled without hanging", func(t *testing.T) {
		var victim string
		for _, n := range workers {
			if n != target && len(kubetest.PodsOn(t, ctx, kube, ns, w.Web)[n]) > 0 {
				victim = n
				break
			}
		}
		if victim == "" {
			t.Fatal("no other worker holds web pods")
		}
		before, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + victim})
		if err != nil {
			t.Fatal(err)
		}
		// The worker's kubelet (kwok) stops: its lease runs out and the node controller marks
		// the Node NotReady; its pods stay Running in the API, as with a dead machine.
		t.Cleanup(func() { giveBack(t, l, kube, victim) })
		if out, err := l.Exec(ctx, victim, "systemctl", "stop", "kubelet"); err != nil {
			t.Fatalf("stop kwok on %s: %v: %s", victim, err, out)
		}
		waitNodeReady(t, ctx, kube, victim, false)

		opts := consent
		opts.GlobalTimeout = 2 * time.Minute
		sum := drainDownNode(t, ctx, kube, victim, opts)
		if want := notAgents(before.Items, w); !slices.Equal(sum.Nodes[0].Deleted, want) {
			t.Errorf("deleted %v, want %v", sum.Nodes[0].Deleted, want)
		}
		if err := nodes.DeleteNode(ctx, kube, victim); err != nil {
			t.Fatal(err)
		}
		// The controllers recreate the web pods on the worker that is left.
		poll(t, ctx, 2*time.Minute, "web back to 5 ready replicas", func() (bool, string) {
			d, err := kube.AppsV1().Deployments(ns).Get(ctx, w.Web, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			if d.Status.ReadyReplicas == 5 {
				return true, ""
			}
			return false, fmt.Sprintf("%d ready; pods: %s", d.Status.ReadyReplicas, podStates(ctx, kube, ns, w.Web))
		})
		list, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range list.Items {
			if p.Spec.NodeName == victim && !strings.HasPrefix(p.Name, w.Agent+"-") {
				t.Errorf("pod %s still bound to deleted node %s", p.Name, victim)
			}
		}
	})
}

// podStates describes an app's pods for a failure message: node, phase, readiness.
func podStates(ctx context.Context, kube kubernetes.Interface, ns, app string) string {
	list, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, p := range list.Items {
		ready := "not ready"
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = "ready"
			}
		}
		out = append(out, fmt.Sprintf("%s on %q %s %s deleting=%t", p.Name, p.Spec.NodeName, p.Status.Phase, ready, p.DeletionTimestamp != nil))
	}
	return strings.Join(out, "; ")
}

// netLeftovers are a flannel/calico node's links and kube-proxy's (iptables mode) chains,
// next to a site rule that is not Kubernetes' and must survive.
const netLeftovers = `set -e
ip link add cni0 type bridge && ip link set cni0 up
ip link add flannel.1 type vxlan id 1 dstport 8472 nolearning
ip link add vxlan.calico type vxlan id 4096 dstport 4789
iptables -t nat -N KUBE-SERVICES
iptables -t nat -N KUBE-SVC-NPX46M4PTMTKRN6Y
iptables -t nat -N KUBE-POSTROUTING
iptables -t nat -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
iptables -t nat -A OUTPUT -j KUBE-SERVICES
iptables -t nat -A POSTROUTING -j KUBE-POSTROUTING
iptables -t nat -A KUBE-SERVICES -d 10.68.0.1/32 -p tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y
iptables -t nat -A KUBE-POSTROUTING -j MASQUERADE
iptables -N KUBE-FIREWALL
iptables -N cali-INPUT
iptables -N FLANNEL-FWD
iptables -A INPUT -j KUBE-FIREWALL
iptables -A INPUT -j cali-INPUT
iptables -A FORWARD -j FLANNEL-FWD
iptables -A FLANNEL-FWD -s 10.244.0.0/16 -j ACCEPT
ip6tables -N KUBE-FIREWALL
ip6tables -A INPUT -j KUBE-FIREWALL
iptables -N SITE-ADMIN
iptables -A SITE-ADMIN -p tcp --dport 22 -j ACCEPT
iptables -A INPUT -j SITE-ADMIN
`

// leftovers is what a real worker leaves behind (flannel, kube-proxy in iptables mode, a
// kubelet with a tmpfs secret volume), made on a lab worker. A stray "kubelet" (perl under
// that name) listens on 10250 and a "containerd-shim" sleeps, as after a crashed kubelet.
const leftovers = `set -e
pod=/var/lib/kubelet/pods/0b7c6a52-1d2e-4f7a-9a0e-5d1c2b3a4f60/volumes/kubernetes.io~secret/token
mkdir -p $pod /var/lib/kubelet/pki /etc/cni/net.d /opt/cni/bin /var/lib/cni/networks/cbr0 /run/flannel /var/log/pods/ns_pod_uid /var/lib/kube-proxy
mount -t tmpfs -o size=1m tmpfs $pod
echo secret > $pod/token
echo cert > /var/lib/kubelet/pki/kubelet.crt
echo 'kind: KubeletConfiguration' > /var/lib/kubelet/config.yaml
echo 'apiVersion: v1' > /etc/kubernetes/kubelet.conf
echo '{"name":"cbr0","plugins":[{"type":"flannel"}]}' > /etc/cni/net.d/10-flannel.conflist
echo 10.244.1.5 > /var/lib/cni/networks/cbr0/last_reserved_ip.0
echo FLANNEL_SUBNET=10.244.1.1/24 > /run/flannel/subnet.env
cp /usr/bin/perl /usr/local/bin/kubelet
cp /usr/bin/perl /usr/local/bin/containerd-shim
systemd-run --unit=stray-kubelet --quiet /usr/local/bin/kubelet -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalPort => 10250, Listen => 5, ReuseAddr => 1) or die $!; while (my $c = $s->accept) { close $c }'
systemd-run --unit=stray-shim --quiet /usr/local/bin/containerd-shim -e 'sleep 3600'
for i in $(seq 50); do ss -Htln 'sport = :10250' | grep -q . && exit 0; sleep 0.1; done
echo 'no listener on 10250'; exit 1
`

func TestLabCleanup(t *testing.T) {
	l := sharedLab(t)
	kube := labKube(t, l)
	const worker = "w4"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The worker is spent: its Node goes once its kubelet is stopped.
	t.Cleanup(func() { _ = nodes.DeleteNode(context.Background(), kube, worker) })
	if out, err := l.Exec(ctx, worker, "sh", "-c", leftovers); err != nil {
		t.Fatalf("prepare leftovers on %s: %v\n%s", worker, err, out)
	}
	// IPVS needs the kernel's ip_vs and ipvsadm on the machine; this kernel may lack both.
	if out, err := exec.Command("ipvsadm", "-Ln").CombinedOutput(); err != nil {
		t.Logf("IPVS part skipped: the kernel has no IPVS here (ipvsadm -Ln: %s)", strings.TrimSpace(string(out)))
	} else if out, err := l.Exec(ctx, worker, "sh", "-c", "command -v ipvsadm && ipvsadm -A -t 10.68.0.1:443 -s rr && ipvsadm -a -t 10.68.0.1:443 -r 10.88.0.11:6443 -m"); err != nil {
		t.Logf("IPVS part skipped: no ipvsadm on the lab machine or no IPVS in its namespace: %v\n%s", err, out)
	}

	inv, err := inventory.Load(l.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	h, err := host.Connect(ctx, inv, worker, l.DialContext)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// Links and netfilter need CAP_NET_ADMIN, which root has on a real node and the lab
	// gives its machines.
	netAdmin, err := hasNetAdmin(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if !netAdmin {
		t.Fatalf("root over SSH on %s lacks CAP_NET_ADMIN: the lab must boot machines with it", worker)
	}
	if out, err := l.Exec(ctx, worker, "sh", "-c", netLeftovers); err != nil {
		t.Fatalf("prepare network leftovers on %s: %v\n%s", worker, err, out)
	}
	ih, _ := inv.Host(worker)
	opts := nodes.CleanupOptions{Units: []string{ih.Paths.KubeletUnit, ih.Paths.KubeProxyUnit}}

	// Verify must see what is there before it can be trusted to say nothing is.
	v, err := nodes.Verify(ctx, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, lo := range v.Leftovers {
		found = append(found, lo.Check+" "+lo.Item)
		if lo.Fix == "" {
			t.Errorf("leftover %s %s without the command that removes it", lo.Check, lo.Item)
		}
	}
	wantFound := []string{"process kubelet", "shim containerd-shim", "unit kubelet", "file /etc/kubernetes/kubelet.conf",
		"file /var/lib/kubelet/pki", "file /etc/cni/net.d", "listener :10250"}
	wantFound = append(wantFound, "link cni0", "link flannel.1", "link vxlan.calico", "iptables iptables -t nat KUBE-SERVICES",
		"iptables iptables -t filter cali-INPUT", "iptables ip6tables -t filter KUBE-FIREWALL")
	for _, want := range wantFound {
		if !slices.Contains(found, want) {
			t.Errorf("verify before cleanup misses %q; found:\n%s", want, strings.Join(found, "\n"))
		}
	}
	if !slices.ContainsFunc(found, func(s string) bool { return strings.HasPrefix(s, "mount /var/lib/kubelet/pods/") }) {
		t.Errorf("verify before cleanup misses the tmpfs mount; found:\n%s", strings.Join(found, "\n"))
	}

	rep, err := nodes.Cleanup(ctx, h, opts)
	var lines []string
	for _, a := range rep.Actions {
		line := fmt.Sprintf("%-18s %-60s %s", a.Step, a.Target, a.Result)
		if a.Error != "" {
			line += ": " + a.Error
		}
		lines = append(lines, line)
	}
	t.Logf("first cleanup (backup %s):\n%s", rep.Backup, strings.Join(lines, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Failed() {
		t.Errorf("failed action: %+v", f)
	}
	done := map[string]bool{}
	for _, a := range rep.Actions {
		if a.Result == nodes.ResultDone {
			done[a.Step+" "+a.Target] = true
		}
	}
	wantDone := []string{"stop-unit kubelet", "stop-process kubelet", "stop-shim containerd-shim", "remove-folder /var/lib/kubelet",
		"remove-folder /etc/kubernetes", "remove-folder /etc/cni", "unmount /var/lib/kubelet/pods/0b7c6a52-1d2e-4f7a-9a0e-5d1c2b3a4f60/volumes/kubernetes.io~secret/token",
		"delete-link cni0", "delete-link flannel.1", "delete-link vxlan.calico"}
	for _, want := range wantDone {
		if !done[want] {
			t.Errorf("cleanup did not report %q done", want)
		}
	}
	if rep.Backup == "" {
		t.Error("no backup of /etc/kubernetes")
	} else if out, err := l.Exec(ctx, worker, "tar", "-tzf", rep.Backup); err != nil || !strings.Contains(string(out), "etc/kubernetes/kubelet.conf") || !strings.Contains(string(out), "var/lib/kubelet/pki/kubelet.crt") {
		t.Errorf("backup %s lacks kubelet.conf or the kubelet PKI: %v\n%s", rep.Backup, err, out)
	}

	v, err = nodes.Verify(ctx, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Clean() {
		t.Errorf("verify after cleanup: leftovers %+v, problems %v", v.Leftovers, v.Problems)
	}
	// What Verify says, seen independently; and what is not Kubernetes' is still there.
	out, err := l.Exec(ctx, worker, "sh", "-c", "cat /proc/self/mounts; ip -o link show; iptables-save; ip6tables-save; ss -Htln; pgrep -l . ; ls /var/lib /etc")
	if err != nil {
		t.Fatal(err)
	}
	state := string(out)
	for _, gone := range []string{"/var/lib/kubelet/pods", "cni0", "flannel.1", "KUBE-", "cali-", "FLANNEL-", ":10250 ", "kubelet\n", "containerd-shim"} {
		if strings.Contains(state, gone) {
			t.Errorf("%q still on %s after cleanup", gone, worker)
		}
	}
	for _, kept := range []string{"sshd", ":SITE-ADMIN", "-A INPUT -j SITE-ADMIN", "-A SITE-ADMIN -p tcp -m tcp --dport 22 -j ACCEPT"} {
		if !strings.Contains(state, kept) {
			t.Errorf("cleanup removed %q, which is not Kubernetes'", kept)
		}
	}

	rep2, err := nodes.Cleanup(ctx, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Changed() {
		t.Errorf("second cleanup changed something: %+v", rep2.Actions)
	}
	for _, f := range rep2.Failed() {
		t.Errorf("second cleanup: failed action: %+v", f)
	}
	if v, err := nodes.Verify(ctx, h, opts); err != nil || !v.Clean() {
		t.Errorf("verify after the second cleanup: %+v %v", v, err)
	}
}

// hasNetAdmin reads the effective capabilities of a command run on h.
func hasNetAdmin(ctx context.Context, h host.Host) (bool, error) {
	res, err := h.Run(ctx, "grep CapEff /proc/self/status")
	if err != nil {
		return false, err
	}
	f := strings.Fields(string(res.Stdout))
	if len(f) != 2 {
		return false, fmt.Errorf("capabilities on %s: %q", h.Name(), res.Stdout)
	}
	caps, err := strconv.ParseUint(f[1], 16, 64)
	if err != nil {
		return false, fmt.Errorf("capabilities on %s: %w", h.Name(), err)
	}
	const capNetAdmin = 12
	return caps&(1<<capNetAdmin) != 0, nil
}
