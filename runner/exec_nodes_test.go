package runner

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/hosttest"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/nodes"
	"github.com/mastershrink/mastershrink/plan"
)

// fakeAPI is a fake API holding Node w2 and objs, whose evictions delete the pod (as the
// eviction subresource does when no PDB objects).
func fakeAPI(objs ...runtime.Object) *fake.Clientset {
	ready := corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}
	kube := fake.NewSimpleClientset(append([]runtime.Object{&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w2"}, Status: ready}}, objs...)...)
	kube.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		ev := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction)
		return true, nil, kube.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), a.GetNamespace(), ev.Name)
	})
	return kube
}

// podOn is a running pod on node owned by the controller (kind/name), none when kind is "".
func podOn(node, name, kind, owner string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "work", Name: name, UID: types.UID(name)}, Spec: corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	if kind != "" {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: owner, Controller: &yes}}
	}
	return p
}

// drainAPI is fakeAPI with a ReplicaSet work/web of two replicas, a Ready Node w1 with room
// for w2's pods, and objs.
func drainAPI(objs ...runtime.Object) *fake.Clientset {
	two := int32(2)
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "work", Name: "web"}, Spec: appsv1.ReplicaSetSpec{Replicas: &two}}
	room := corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110"), corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi")}
	w1 := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}, Status: corev1.NodeStatus{Allocatable: room,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	return fakeAPI(append([]runtime.Object{rs, w1}, objs...)...)
}

func apiRun(kube *fake.Clientset, st plan.Step) *run {
	fc, p := newFakes(nil, kube)
	p.Steps = []plan.Step{st}
	return hostRun(fc, p)
}

// nodes/drain: the Node cordoned and its pods evicted (DaemonSets' left); done only once the
// Node is gone; a pod no controller would recreate refuses the drain, which evicts nothing.
func TestExecutorDrain(t *testing.T) {
	ctx := context.Background()
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "work", Name: "agent"}}
	kube := drainAPI(ds, podOn("w2", "web-1", "ReplicaSet", "web"), podOn("w2", "web-2", "ReplicaSet", "web"), podOn("w2", "agent-1", "DaemonSet", "agent"))
	st := mkStep(plan.KindDrain, "w2", plan.DrainParams{Node: "w2"})
	r := apiRun(kube, st)
	if doneOf(t, r, st) {
		t.Fatal("done while the Node exists")
	}
	out, err := apply(t, r, st)
	if err != nil {
		t.Fatal(err)
	}
	n, err := kube.CoreV1().Nodes().Get(ctx, "w2", metav1.GetOptions{})
	if err != nil || !n.Spec.Unschedulable {
		t.Errorf("w2 not cordoned: %v", err)
	}
	for _, name := range []string{"web-1", "web-2"} {
		if _, err := kube.CoreV1().Pods("work").Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("pod %s not evicted: %v", name, err)
		}
	}
	if _, err := kube.CoreV1().Pods("work").Get(ctx, "agent-1", metav1.GetOptions{}); err != nil {
		t.Errorf("the DaemonSet's pod was evicted: %v", err)
	}
	if !strings.Contains(out.note, "2 pods evicted") || !strings.Contains(out.note, "1 left") || len(out.changes) != 1 || out.changes[0].Node != "w2" {
		t.Errorf("outcome %+v", out)
	}
	if doneOf(t, r, st) {
		t.Error("a drained Node that still exists is done (its delete step proves it gone)")
	}
	if err := kube.CoreV1().Nodes().Delete(ctx, "w2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !doneOf(t, r, st) {
		t.Error("not done once the Node is gone")
	}

	bare := fakeAPI(podOn("w2", "debug", "", ""))
	r = apiRun(bare, st)
	if _, err := apply(t, r, st); !errors.Is(err, nodes.ErrRefused) {
		t.Errorf("drain with a bare pod: %v, want nodes.ErrRefused", err)
	}
	if _, err := bare.CoreV1().Pods("work").Get(ctx, "debug", metav1.GetOptions{}); err != nil {
		t.Errorf("a refused drain deleted the bare pod: %v", err)
	}
	if n, _ := bare.CoreV1().Nodes().Get(ctx, "w2", metav1.GetOptions{}); n.Spec.Unschedulable {
		t.Error("a refused drain left w2 cordoned")
	}
}

// nodes/drain of a Node that is down (NotReady, no lease): its pods are deleted only with the
// plan's node_down, else the drain is refused.
func TestExecutorDrainDownNode(t *testing.T) {
	ctx := context.Background()
	for _, down := range []bool{false, true} {
		kube := drainAPI(podOn("w2", "web-1", "ReplicaSet", "web"))
		n, _ := kube.CoreV1().Nodes().Get(ctx, "w2", metav1.GetOptions{})
		n.Status.Conditions[0].Status = corev1.ConditionUnknown
		if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		st := mkStep(plan.KindDrain, "w2", plan.DrainParams{Node: "w2", NodeDown: down})
		out, err := apply(t, apiRun(kube, st), st)
		_, gerr := kube.CoreV1().Pods("work").Get(ctx, "web-1", metav1.GetOptions{})
		switch {
		case !down && (!errors.Is(err, nodes.ErrRefused) || gerr != nil):
			t.Errorf("down node without node_down: %v (pod: %v), want a refusal that deletes nothing", err, gerr)
		case down && (err != nil || !apierrors.IsNotFound(gerr) || !strings.Contains(out.note, "1 deleted")):
			t.Errorf("down node with node_down: %v, note %q (pod: %v), want its pod deleted", err, out.note, gerr)
		}
	}
}

// nodes/delete: done once gone (a rerun then says so), and an API refusal fails the step.
func TestExecutorDeleteNodeFails(t *testing.T) {
	kube := fakeAPI()
	cordon(t, kube, "w2")
	kube.PrependReactor("delete", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("nodes"), "w2", errors.New("RBAC"))
	})
	st := mkStep(plan.KindDeleteNode, "w2", plan.DeleteNodeParams{Node: "w2"})
	r := apiRun(kube, st)
	if _, err := apply(t, r, st); !apierrors.IsForbidden(err) {
		t.Errorf("delete refused by the API: %v", err)
	}
	if doneOf(t, r, st) {
		t.Error("done after a refused delete")
	}
	drained := fakeAPI()
	cordon(t, drained, "w2")
	r = apiRun(drained, st)
	if _, err := apply(t, r, st); err != nil {
		t.Fatal(err)
	}
	if !doneOf(t, r, st) {
		t.Error("not done after the delete")
	}
	if _, _, err := hostRun(hostsOnly{}, &plan.Plan{}).nodeGone(context.Background(), "w2"); err == nil {
		t.Error("no API: the postcondition could not be checked, yet no error")
	}
}

// cleanupHost adds a worker w2 to the etcd fixture, with a kubelet and kube-proxy running and
// their files; its shell removes folders and finds no process, tool or listener.
func cleanupHost(f *etcdFixture) *hosttest.Host {
	w2 := hosttest.New("w2")
	f.fc.hosts["w2"] = w2
	f.fc.inv.Hosts = append(f.fc.inv.Hosts, inventory.Host{Name: "w2", Address: "192.0.2.12", Roles: []inventory.Role{inventory.RoleWorker},
		Paths: inventory.Paths{KubeletUnit: "kubelet.service", KubeProxyUnit: "kube-proxy.service"}})
	for _, p := range []string{"/etc/kubernetes/kubelet.conf", "/etc/kubernetes/ssl/ca.pem", "/var/lib/kubelet/config.yaml", "/var/lib/kubelet/pki/kubelet.crt"} {
		w2.SetFile(p, "x")
	}
	for _, u := range []string{"kubelet.service", "kube-proxy.service"} {
		w2.SetUnit(u, unitRunning)
	}
	w2.RunFunc = shell(
		on("pgrep ", exitWith("w2", 1, "")),
		on("command -v ", exitWith("w2", 1, "")),
		on("rm -rf --one-file-system ", func(cmd string) (host.Result, error) {
			w2.Remove(strings.Trim(strings.TrimPrefix(cmd, "rm -rf --one-file-system "), "'"))
			return host.Result{}, nil
		}))
	return w2
}

// nodes/cleanup: units stopped and disabled, folders removed after a backup, done after; a
// host still in etcd, and a failed backup, clean nothing.
func TestExecutorCleanup(t *testing.T) {
	t.Parallel() // its own etcd and fakes
	f := newEtcdFixture(t)
	w2 := cleanupHost(f)
	st := mkStep(plan.KindCleanup, "w2", nil)
	r := f.run(&plan.Plan{Steps: []plan.Step{st}})

	base := w2.RunFunc
	w2.RunFunc = shell(on("umask 077 ", exitWith("w2", 2, "tar: /var/backups: No space left on device")), fallback(base))
	if _, err := apply(t, r, st); err == nil || !strings.Contains(err.Error(), "backup") {
		t.Errorf("failed backup: %v", err)
	}
	if _, ok := w2.File("/etc/kubernetes/kubelet.conf"); !ok || slices.ContainsFunc(w2.Log(), func(l string) bool { return strings.HasPrefix(l, "stop ") }) {
		t.Errorf("a cleanup without its backup acted: %v", w2.Log())
	}
	w2.RunFunc = base

	if doneOf(t, r, st) {
		t.Fatal("done with the kubelet running")
	}
	out, err := apply(t, r, st)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"kubelet.service", "kube-proxy.service"} {
		if s := w2.Unit(u); s.ActiveState != "inactive" || s.UnitFileState != "disabled" {
			t.Errorf("%s after the cleanup: %+v", u, s)
		}
	}
	if _, ok := w2.File("/etc/kubernetes/kubelet.conf"); ok {
		t.Error("/etc/kubernetes left")
	}
	if !strings.HasPrefix(out.backups["w2:/etc/kubernetes"], "/var/backups/mastershrink/kube-node-") {
		t.Errorf("backups %v", out.backups)
	}
	if !slices.ContainsFunc(out.changes, func(c Change) bool { return c.Action == "cleanup:remove-folder" && c.Detail == "/var/lib/kubelet" }) {
		t.Errorf("changes %+v", out.changes)
	}
	if len(out.warnings) != 1 || !strings.Contains(out.warnings[0], "the backup w2:/var/backups/mastershrink/kube-node-") {
		t.Errorf("warnings %v, want the backup's only", out.warnings)
	}
	if !doneOf(t, r, st) {
		t.Error("not done after the cleanup")
	}

	// A host that is still an etcd member is refused before anything.
	m3 := f.fc.hosts["m3"]
	m3.SetUnit("kubelet.service", unitRunning)
	ih, _ := f.fc.inv.Host("m3")
	ih.Paths.KubeletUnit = "kubelet.service"
	member := mkStep(plan.KindCleanup, "m3", nil)
	if _, err := apply(t, r, member); !errors.Is(err, ErrStillControlPlane) {
		t.Errorf("cleanup of a member's host: %v", err)
	}
	if s := m3.Unit("kubelet.service"); s.ActiveState != "active" || len(m3.Commands()) != 0 {
		t.Errorf("a refused cleanup acted on m3: %v", m3.Log())
	}
}

// nodes/wipe's postcondition, and the remove mode.
func TestExecutorWipeDone(t *testing.T) {
	t.Parallel() // its own etcd and fakes
	f := newEtcdFixture(t)
	w2 := cleanupHost(f)
	keys := "/etc/kubernetes/ssl/kubelet-key.pem"
	w2.SetFile(keys, "-----BEGIN EC PRIVATE KEY-----")
	w2.SetFile("/var/lib/etcd/member/snap/db", "data")
	st := mkStep(plan.KindWipe, "w2", plan.WipeParams{Mode: "remove", DataDirs: []string{"/var/lib/etcd"}})
	r := f.run(&plan.Plan{Steps: []plan.Step{st}})
	found := func(cmd string) (host.Result, error) {
		var out []string
		if _, ok := w2.File(keys); ok {
			out = append(out, keys)
		}
		if len(out) == 0 {
			return exitWith("w2", 1, "")(cmd)
		}
		return host.Result{Stdout: []byte(strings.Join(out, "\n") + "\n")}, nil
	}
	w2.RunFunc = shell(on("grep -rlE", found),
		on("rm -f -- ", func(cmd string) (host.Result, error) {
			w2.Remove(strings.Trim(strings.TrimPrefix(cmd, "rm -f -- "), "'"))
			return host.Result{}, nil
		}),
		on("rm -rf -- ", func(cmd string) (host.Result, error) {
			w2.Remove(strings.Trim(strings.TrimPrefix(cmd, "rm -rf -- "), "'"))
			return host.Result{}, nil
		}))
	if doneOf(t, r, st) {
		t.Fatal("done with a key and etcd's data left")
	}
	out, err := apply(t, r, st)
	if err != nil {
		t.Fatalf("%v (ran %v)", err, w2.Commands())
	}
	if !strings.Contains(out.note, "1 key files removed, etcd data removed") || len(out.changes) == 0 {
		t.Errorf("outcome %+v (ran %v)", out, w2.Commands())
	}
	if !doneOf(t, r, st) {
		t.Errorf("not done after the wipe (ran %v)", w2.Commands())
	}
	// A host whose etcd still runs is refused, even when it is no member.
	w2.SetUnit("etcd.service", unitRunning)
	ih, _ := f.fc.inv.Host("w2")
	ih.Paths.EtcdUnit = "etcd.service"
	if _, err := apply(t, r, st); !errors.Is(err, ErrStillControlPlane) || !strings.Contains(err.Error(), "etcd.service") {
		t.Errorf("wipe under a running etcd: %v", err)
	}
}

// A wipe that fails half-way through: what it removed before the failure is in the audit
// log, and the failure names what it could not remove.
func TestWipeHalfDoneIsAudited(t *testing.T) {
	f := newEtcdFixture(t)
	w2 := cleanupHost(f)
	k1, k2 := "/etc/kubernetes/ssl/a-key.pem", "/etc/kubernetes/ssl/b-key.pem"
	w2.SetFile(k1, "-----BEGIN EC PRIVATE KEY-----")
	w2.SetFile(k2, "-----BEGIN EC PRIVATE KEY-----")
	w2.RunFunc = shell(on("grep -rlE", stdout(k1+"\n"+k2+"\n")), on("rm -f -- "+k2, exitWith("w2", 1, "rm: Operation not permitted")))
	st := mkStep(plan.KindWipe, "w2", plan.WipeParams{Mode: "move"})
	r := f.run(&plan.Plan{Steps: []plan.Step{st}})
	dir := journaled(t, r)
	if _, err := r.step(ctxT(t), 1, st, nil); err == nil || !strings.Contains(err.Error(), k2) {
		t.Fatalf("half-done wipe: %v, want an error naming %s", err, k2)
	}
	audit, err := os.ReadFile(dir + "/audit.jsonl")
	if err != nil || !strings.Contains(string(audit), "removed "+k1) {
		t.Errorf("the audit log does not say %s was removed before the failure:\n%s", k1, audit)
	}
}
