package nodes_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/mastershrink/mastershrink/nodes"
	"github.com/mastershrink/mastershrink/testenv/kubetest"
	"github.com/mastershrink/mastershrink/testenv/seed"
)

// syncBuffer is a progress writer the test can read while Drain writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func podsOn(t *testing.T, ctx context.Context, kube kubernetes.Interface, ns, app string) map[string][]string {
	t.Helper()
	list, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, p := range list.Items {
		out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p.Name)
	}
	return out
}

func tempPDBs(t *testing.T, ctx context.Context, kube kubernetes.Interface) []string {
	t.Helper()
	list, err := kube.PolicyV1().PodDisruptionBudgets("").List(ctx, metav1.ListOptions{LabelSelector: nodes.LabelManagedBy + "=mastershrink"})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range list.Items {
		out = append(out, p.Namespace+"/"+p.Name)
	}
	return out
}

func unschedulable(t *testing.T, ctx context.Context, kube kubernetes.Interface, node string) bool {
	t.Helper()
	n, err := kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Spec.Unschedulable
}

func patchPDB(t *testing.T, ctx context.Context, kube kubernetes.Interface, ns, name, spec string) {
	t.Helper()
	if _, err := kube.PolicyV1().PodDisruptionBudgets(ns).Patch(ctx, name, types.MergePatchType, []byte(spec), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func refusedNames(s nodes.Summary) map[string]string {
	out := map[string]string{}
	for _, n := range s.Nodes {
		for _, p := range n.Refused {
			out[p.Name] = p.Reason
		}
	}
	return out
}

func TestDrain(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4"}
	env := kubetest.Start(t, kubetest.Options{Nodes: names})
	kube := env.Client
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const ns = "work"
	w, err := seed.SeedWorkloads(ctx, kube, ns, names)
	if err != nil {
		t.Fatal(err)
	}
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
		agent := podsOn(t, ctx, kube, ns, w.Agent)["n1"]
		if len(agent) != 1 || !strings.Contains(r[agent[0]], "DaemonSet") {
			t.Errorf("DaemonSet pod %v not refused: %v", agent, r)
		}
		if unschedulable(t, ctx, kube, "n1") {
			t.Error("n1 stays cordoned after a refused drain")
		}
		if got := podsOn(t, ctx, kube, ns, w.Bare)["n1"]; len(got) != 1 {
			t.Errorf("bare pod gone after a refused drain: %v", got)
		}
	})

	t.Run("single replica refused", func(t *testing.T) {
		var dbNode string
		for n := range podsOn(t, ctx, kube, ns, w.DB) {
			dbNode = n
		}
		sum, err := nodes.Drain(ctx, kube, []string{dbNode}, consent)
		if !errors.Is(err, nodes.ErrRefused) {
			t.Fatalf("err %v, want ErrRefused", err)
		}
		r := refusedNames(sum)
		if len(r) != 1 || !strings.Contains(r[w.DB+"-0"], "only replica of StatefulSet/db") {
			t.Fatalf("refused %v, want only db-0 as single replica", r)
		}
		if unschedulable(t, ctx, kube, dbNode) {
			t.Error("node stays cordoned after a refused drain")
		}
	})

	// A node with web pods (guarded by their own PDB) and api pods (guarded by a temporary one).
	var target string
	web, api := podsOn(t, ctx, kube, ns, w.Web), podsOn(t, ctx, kube, ns, w.API)
	for _, n := range names {
		if len(web[n]) > 0 && len(api[n]) > 0 {
			target = n
			break
		}
	}
	if target == "" {
		t.Fatalf("no node holds web and api pods: web %v api %v", web, api)
	}
	consent.AllowSingleReplica = true

	t.Run("temporary PDBs removed on failure", func(t *testing.T) {
		patchPDB(t, ctx, kube, ns, w.Web, `{"spec":{"maxUnavailable":0}}`)
		defer patchPDB(t, ctx, kube, ns, w.Web, `{"spec":{"maxUnavailable":1}}`)
		var progress syncBuffer
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
			if strings.HasPrefix(b.Pod, ns+"/web-") && strings.Contains(b.Reason, "waiting for PDB work/web (disruptionsAllowed=0)") {
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
		webPods := podsOn(t, ctx, kube, ns, w.Web)[target]
		var progress syncBuffer
		opts := consent
		opts.Timeout = 2 * time.Minute
		opts.OperationID = "test-honour"
		opts.Progress = &progress
		type result struct {
			sum nodes.Summary
			err error
		}
		done := make(chan result, 1)
		go func() {
			s, err := nodes.Drain(ctx, kube, []string{target}, opts)
			done <- result{s, err}
		}()
		blocked := "waiting for PDB work/web (disruptionsAllowed=0)"
		deadline := time.Now().Add(time.Minute)
		for !strings.Contains(progress.String(), blocked) {
			if time.Now().After(deadline) {
				t.Fatalf("never saw %q:\n%s", blocked, progress.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, p := range webPods {
			got, err := kube.CoreV1().Pods(ns).Get(ctx, p, metav1.GetOptions{})
			if err != nil || got.DeletionTimestamp != nil {
				t.Fatalf("web pod %s evicted while its PDB allowed no disruption (err %v)", p, err)
			}
		}
		if _, err := kube.AppsV1().Deployments(ns).Patch(ctx, w.Web, types.MergePatchType, []byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		var r result
		select {
		case r = <-done:
		case <-ctx.Done():
			t.Fatalf("drain did not finish:\n%s", progress.String())
		}
		if r.err != nil {
			t.Fatalf("drain: %v\n%s", r.err, progress.String())
		}
		for _, p := range webPods {
			if !slices.Contains(r.sum.Nodes[0].Evicted, ns+"/"+p) {
				t.Errorf("web pod %s not in evicted %v", p, r.sum.Nodes[0].Evicted)
			}
		}
		left, err := kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + target})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range left.Items {
			if !strings.HasPrefix(p.Name, w.Agent+"-") {
				t.Errorf("pod %s still on drained node %s", p.Name, target)
			}
		}
		if got := tempPDBs(t, ctx, kube); len(got) != 0 {
			t.Errorf("temporary PDBs left after the drain: %v", got)
		}
		if err := nodes.DeleteNode(ctx, kube, target); err != nil {
			t.Fatal(err)
		}
		if _, err := kube.CoreV1().Nodes().Get(ctx, target, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("node %s still there: %v", target, err)
		}
		if err := nodes.DeleteNode(ctx, kube, target); err != nil {
			t.Errorf("deleting a deleted node: %v", err)
		}
	})
}

func TestDrainDownNode(t *testing.T) {
	names := []string{"d1", "d2", "d3"}
	env := kubetest.Start(t, kubetest.Options{Nodes: names})
	kube := env.Client
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const ns = "down"
	w, err := seed.SeedWorkloads(ctx, kube, ns, names)
	if err != nil {
		t.Fatal(err)
	}
	const victim = "d1" // holds the bare pod
	before, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + victim})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.StopNode(victim); err != nil {
		t.Fatal(err)
	}
	opts := nodes.DrainOptions{IgnoreDaemonSets: true, Force: true, DeleteEmptyDirData: true, AllowSingleReplica: true, GlobalTimeout: time.Minute}

	sum, err := nodes.Drain(ctx, kube, []string{victim}, opts)
	if !errors.Is(err, nodes.ErrRefused) {
		t.Fatalf("without consent: err %v, want ErrRefused", err)
	}
	for _, p := range sum.Nodes[0].Refused {
		if !strings.Contains(p.Hint, "--delete-pods-of-down-node") {
			t.Errorf("refusal of %s lacks the consent hint: %+v", p.Name, p)
		}
	}

	var progress syncBuffer
	opts.DeletePodsOfDownNode = true
	opts.Progress = &progress
	sum, err = nodes.Drain(ctx, kube, []string{victim}, opts)
	if err != nil {
		t.Fatalf("with consent: %v\n%s", err, progress.String())
	}
	if !sum.Nodes[0].Down {
		t.Error("summary does not say the node is down")
	}
	var wantDeleted []string
	for _, p := range before.Items {
		if !strings.HasPrefix(p.Name, w.Agent+"-") {
			wantDeleted = append(wantDeleted, ns+"/"+p.Name)
		}
	}
	slices.Sort(wantDeleted)
	if !slices.Equal(sum.Nodes[0].Deleted, wantDeleted) {
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
