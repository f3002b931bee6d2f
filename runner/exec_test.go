package runner

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/hosttest"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
)

// hostsOnly is a cluster of fake hosts, for executors that touch only hosts.
type hostsOnly map[string]*hosttest.Host

func (c hostsOnly) Host(_ context.Context, name string) (host.Host, error) {
	return fakeHost(c, name)
}
func (hostsOnly) Etcd(context.Context) (*etcd.Client, error) { return nil, errors.New("no etcd") }
func (hostsOnly) EtcdKV(context.Context) (*clientv3.Client, error) {
	return nil, errors.New("no etcd")
}
func (hostsOnly) Kube() (kubernetes.Interface, *rest.Config, error) {
	return nil, nil, errors.New("no API")
}
func (c hostsOnly) Inventory() *inventory.Inventory {
	inv := &inventory.Inventory{Cluster: "t"}
	for name := range c {
		inv.Hosts = append(inv.Hosts, inventory.Host{Name: name, Address: "192.0.2.1", Roles: []inventory.Role{inventory.RoleMaster},
			Paths: inventory.Paths{APIServerUnit: "kube-apiserver", ControllerManagerUnit: "kube-controller-manager", SchedulerUnit: "kube-scheduler"}})
	}
	return inv
}

func hostRun(c clusterAPI, p *plan.Plan) *run {
	return &run{p: p, c: c, prog: newProgress(io.Discard, false, nil), history: History{Started: map[string]bool{}, Ended: map[string]bool{}}}
}

func doneOf(t *testing.T, r *run, st plan.Step) bool {
	t.Helper()
	ex, err := r.executor(st)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, _, err := ex.done(ctx)
	if err != nil {
		t.Fatalf("%s done: %v", st.ID, err)
	}
	return d
}

var unitRunning = host.UnitStatus{ActiveState: "active", SubState: "running", UnitFileState: "enabled"}

// lb/stop on a leaving host (components/retire, which also needs a ready survivor, is in
// exec_apiserver_test.go and retire_guard_test.go).
func TestExecutorLBStop(t *testing.T) {
	m2 := hosttest.New("m2")
	m2.SetUnit("kube-nginx.service", unitRunning)
	stop := plan.Step{ID: plan.KindLBStop + "/m2", Kind: plan.KindLBStop, Host: "m2", Params: map[string]string{"unit": "kube-nginx.service"}}
	r := hostRun(hostsOnly{"m2": m2}, &plan.Plan{Steps: []plan.Step{stop}})
	for _, st := range []plan.Step{stop} {
		if doneOf(t, r, st) {
			t.Fatalf("%s done before it ran", st.ID)
		}
		if _, err := apply(t, r, st); err != nil {
			t.Fatalf("%s: %v", st.ID, err)
		}
		if !doneOf(t, r, st) {
			t.Errorf("%s not done after it ran: %v", st.ID, m2.Log())
		}
	}
	for _, u := range []string{"kube-nginx.service"} {
		if s := m2.Unit(u); s.ActiveState != "inactive" || s.UnitFileState != "disabled" {
			t.Errorf("%s: %+v, want inactive and disabled", u, s)
		}
	}
	// Already done: a rerun changes nothing.
	before := len(m2.Log())
	if _, err := apply(t, r, stop); err != nil || len(m2.Log()) != before {
		t.Errorf("second stop: %v, actions %v", err, m2.Log()[before:])
	}
	// A host that cannot be reached fails the step, naming it.
	gone := plan.Step{ID: plan.KindLBStop + "/m9", Kind: plan.KindLBStop, Host: "m9", Params: map[string]string{"unit": "kube-nginx.service"}}
	if _, err := apply(t, r, gone); err == nil || !strings.Contains(err.Error(), "m9") {
		t.Errorf("stop on an unknown host: %v", err)
	}
}

func TestExecutorInitialCluster(t *testing.T) {
	m1 := hosttest.New("m1")
	const unit = "/etc/systemd/system/etcd.service"
	before, after := "--initial-cluster=a=1,b=2,c=3\n", "--initial-cluster=a=1\n"
	m1.SetFile(unit, before)
	st := plan.Step{ID: plan.KindInitialCluster + "/m1", Kind: plan.KindInitialCluster, Host: "m1",
		Files: []host.FileChange{{Host: "m1", Path: unit, Before: before, After: after}}, Params: map[string]string{"unit": "etcd.service"}}
	r := hostRun(hostsOnly{"m1": m1}, &plan.Plan{Steps: []plan.Step{st}})
	if doneOf(t, r, st) {
		t.Fatal("done before it ran")
	}
	out, err := apply(t, r, st)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m1.File(unit); got != after || !slices.Contains(m1.Log(), "daemon-reload") {
		t.Errorf("unit %q, actions %v", got, m1.Log())
	}
	if _, ok := m1.File(unit + ".bak-test"); !ok {
		t.Error("no backup of the unit")
	}
	if len(out.changes) != 1 || out.changes[0].File != unit {
		t.Errorf("audit changes %+v", out.changes)
	}
	// The reload leaves no trace: only a journaled end makes it done.
	r.history.Ended[st.ID] = true
	if !doneOf(t, r, st) {
		t.Error("not done after its end was journaled")
	}
	// Someone edited the unit since the plan: refused, untouched.
	m1.SetFile(unit, "--initial-cluster=x=9\n")
	if _, err := apply(t, r, st); !errors.Is(err, etcd.ErrFileDrift) {
		t.Errorf("drifted unit: %v, want ErrFileDrift", err)
	}
}

// withAPI is hostsOnly with a fake Kubernetes API.
type withAPI struct {
	hostsOnly
	kube kubernetes.Interface
}

func (c withAPI) Kube() (kubernetes.Interface, *rest.Config, error) {
	return c.kube, &rest.Config{}, nil
}

// nodes/delete proves from the API that the Node is drained before it deletes it: not
// cordoned, or still running a ReplicaSet's pod, is refused with the Node left; DaemonSet,
// static and terminating pods do not count.
func TestExecutorDeleteNode(t *testing.T) {
	owned := func(name, kind string) *corev1.Pod { return podOn("w2", name, kind, "x") }
	static := owned("kube-proxy-w2", "Node")
	static.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"}
	going := owned("web-old", "ReplicaSet")
	going.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	kube := fake.NewSimpleClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w2"}},
		owned("web-1", "ReplicaSet"), owned("node-exporter-w2", "DaemonSet"), static, going)
	st := plan.Step{ID: plan.KindDeleteNode + "/w2", Kind: plan.KindDeleteNode, Host: "w2", Params: map[string]string{"node": "w2"}}
	r := hostRun(withAPI{hostsOnly{}, kube}, &plan.Plan{Steps: []plan.Step{st}})
	if doneOf(t, r, st) {
		t.Fatal("done while the Node exists")
	}
	ctx := context.Background()
	if _, err := apply(t, r, st); !errors.Is(err, ErrNotDrained) || !strings.Contains(err.Error(), "not cordoned") {
		t.Errorf("delete of an uncordoned Node: %v", err)
	}
	cordon(t, kube, "w2")
	if _, err := apply(t, r, st); !errors.Is(err, ErrNotDrained) || !strings.Contains(err.Error(), "1 pods (work/web-1)") {
		t.Errorf("delete of a Node still running web-1: %v", err)
	}
	if _, err := kube.CoreV1().Nodes().Get(ctx, "w2", metav1.GetOptions{}); err != nil {
		t.Fatalf("a refused delete deleted the Node: %v", err)
	}
	kube.CoreV1().Pods("work").Delete(ctx, "web-1", metav1.DeleteOptions{})
	if _, err := apply(t, r, st); err != nil {
		t.Fatal(err)
	}
	if !doneOf(t, r, st) {
		t.Error("not done after the deletion")
	}
	if _, err := kube.CoreV1().Nodes().Get(context.Background(), "w2", metav1.GetOptions{}); err == nil {
		t.Error("Node w2 still exists")
	}
}

// cordon marks a fake API's Node unschedulable, as nodes/drain leaves it.
func cordon(t *testing.T, kube *fake.Clientset, node string) {
	t.Helper()
	n, err := kube.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Unschedulable = true
	if _, err := kube.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
