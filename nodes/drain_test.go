package nodes_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastershrink/mastershrink/nodes"
	"github.com/mastershrink/mastershrink/testenv"
	"github.com/mastershrink/mastershrink/testenv/kubetest"
	"github.com/mastershrink/mastershrink/testenv/seed"
)

// notAgents are the pods a down node's drain deletes: all of them but the DaemonSet's, sorted
// as the summary lists them.
func notAgents(pods []corev1.Pod, w seed.Workloads) []string {
	var out []string
	for _, p := range pods {
		if !strings.HasPrefix(p.Name, w.Agent+"-") {
			out = append(out, w.Namespace+"/"+p.Name)
		}
	}
	slices.Sort(out)
	return out
}

func TestDrain(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4"}
	const ns = "work"
	env, w, ctx := kubetest.StartSeeded(t, ns, names...)
	kube := env.Client
	consent := nodes.DrainOptions{IgnoreDaemonSets: true, Force: true, DeleteEmptyDirData: true, Timeout: time.Minute}

	t.Run("refused changes nothing", func(t *testing.T) {
		sum, err := nodes.Drain(ctx, kube, []string{"n1"}, nodes.DrainOptions{})
		if !errors.Is(err, nodes.ErrRefused) {
			t.Fatalf("err %v, want ErrRefused", err)
		}
		r := refusedNames(sum)
		if !strings.Contains(r[w.Bare], "no controller") {
			t.Errorf("bare pod not refused as unmanaged: %v", r)
		}
		agent := kubetest.PodsOn(t, ctx, kube, ns, w.Agent)["n1"]
		if len(agent) != 1 || !strings.Contains(r[agent[0]], "DaemonSet") {
			t.Errorf("DaemonSet pod %v not refused: %v", agent, r)
		}
		if kubetest.Unschedulable(t, ctx, kube, "n1") {
			t.Error("n1 stays cordoned after a refused drain")
		}
		if got := kubetest.PodsOn(t, ctx, kube, ns, w.Bare)["n1"]; len(got) != 1 {
			t.Errorf("bare pod gone after a refused drain: %v", got)
		}
	})

	t.Run("single replica refused", func(t *testing.T) { refusesSingleReplica(t, ctx, kube, w, consent) })

	// A node with web pods (guarded by their own PDB) and api pods (guarded by a temporary one).
	target := kubetest.NodeRunning(t, ctx, kube, ns, names, w.Web, w.API)
	api := kubetest.PodsOn(t, ctx, kube, ns, w.API)
	consent.AllowSingleReplica = true

	t.Run("temporary PDBs removed on failure", func(t *testing.T) {
		patchPDB(t, ctx, kube, ns, w.Web, `{"spec":{"maxUnavailable":0}}`)
		defer patchPDB(t, ctx, kube, ns, w.Web, `{"spec":{"maxUnavailable":1}}`)
		var progress testenv.Buffer
		opts := consent
		opts.Timeout = 8 * time.Second
		opts.OperationID = "test-failure"
		opts.Progress = &progress
		sum, err := nodes.Drain(ctx, kube, []string{target}, opts)
		if !errors.Is(err, nodes.ErrBlocked) {
			t.Fatalf("err %v, want ErrBlocked\n%s", err, progress.String())
		}
		if !slices.Contains(sum.TempPDBs, ns+"/"+api[target][0][:strings.LastIndex(api[target][0], "-")]+"-mastershrink") {
			t.Errorf("no temporary PDB for the api ReplicaSet: %v", sum.TempPDBs)
		}
		var blockedWeb bool
		for _, b := range sum.Nodes[0].Blocked {
			// "(disruptionsAllowed=0)" follows when the PDB could still be read before the
			// deadline; an apiserver slowed by a loaded machine may not answer that last read.
			if strings.HasPrefix(b.Pod, ns+"/web-") && strings.Contains(b.Reason, "waiting for PDB work/web") {
				blockedWeb = true
			}
		}
		if !blockedWeb {
			t.Errorf("web pod not reported blocked by its PDB: %+v", sum.Nodes[0].Blocked)
		}
		if left := tempPDBs(t, ctx, kube); len(left) != 0 {
			t.Errorf("temporary PDBs left after a failed drain: %v", left)
		}
		if !strings.Contains(progress.String(), "created temporary pdb") || !strings.Contains(progress.String(), "removed temporary pdb") {
			t.Errorf("progress does not show the guard:\n%s", progress.String())
		}
		if _, err := nodes.Uncordon(ctx, kube, target); err != nil {
			t.Fatal(err)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("PDB honoured then drained and deleted", func(t *testing.T) {
		// Only the original 4 web pods count: none may go until a fifth is ready.
		patchPDB(t, ctx, kube, ns, w.Web, `{"spec":{"maxUnavailable":null,"minAvailable":4}}`)
		want := w.Pods
		if _, err := kube.CoreV1().Pods(ns).Get(ctx, w.Bare, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			want-- // evicted for good by the failed drain (--force)
		}
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		if err := seed.WaitPodsRunning(wctx, kube, ns, want); err != nil {
			t.Fatal(err)
		}
		opts := consent
		opts.Timeout = 2 * time.Minute
		opts.OperationID = "test-honour"
		drainPastPDB(t, ctx, kube, w, target, opts, "", nil)
		deleteNode(t, ctx, kube, target)
		if err := nodes.DeleteNode(ctx, kube, target); err != nil {
			t.Errorf("deleting a deleted node: %v", err)
		}
	})
}

func TestDrainDownNode(t *testing.T) {
	const ns = "down"
	env, w, ctx := kubetest.StartSeeded(t, ns, "d1", "d2", "d3")
	kube := env.Client
	const victim = "d1" // holds the bare pod
	before, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + victim})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.StopNode(victim); err != nil {
		t.Fatal(err)
	}
	opts := nodes.DrainOptions{IgnoreDaemonSets: true, Force: true, DeleteEmptyDirData: true, AllowSingleReplica: true, GlobalTimeout: time.Minute}

	sum := drainDownNode(t, ctx, kube, victim, opts)
	if wantDeleted := notAgents(before.Items, w); !slices.Equal(sum.Nodes[0].Deleted, wantDeleted) {
		t.Errorf("deleted %v, want %v", sum.Nodes[0].Deleted, wantDeleted)
	}
	if err := nodes.DeleteNode(ctx, kube, victim); err != nil {
		t.Fatal(err)
	}
	// Controllers recreate everything but the bare pod elsewhere; the pod GC removes the
	// DaemonSet pod of the deleted Node.
	if err := seed.WaitPodsRunning(ctx, kube, ns, w.Pods-2); err != nil {
		t.Fatal(err)
	}
	list, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		if p.Spec.NodeName == victim {
			t.Errorf("pod %s still bound to deleted node", p.Name)
		}
	}
}
