package nodes_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/mastershrink/mastershrink/nodes"
	"github.com/mastershrink/mastershrink/testenv"
	"github.com/mastershrink/mastershrink/testenv/kubetest"
	"github.com/mastershrink/mastershrink/testenv/seed"
)

// The drain scenarios that run both on the fast tier (kubetest) and in the lab: the same
// steps and assertions against two kinds of cluster.

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

// refusesSingleReplica drains the node of the db StatefulSet's only pod with every consent but
// that one: refused naming it alone, the node uncordoned, the pod where it was.
func refusesSingleReplica(t *testing.T, ctx context.Context, kube kubernetes.Interface, w seed.Workloads, consent nodes.DrainOptions) {
	t.Helper()
	var dbNode string
	for n := range kubetest.PodsOn(t, ctx, kube, w.Namespace, w.DB) {
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
	if kubetest.Unschedulable(t, ctx, kube, dbNode) {
		t.Error("node stays cordoned after a refused drain")
	}
	if got := kubetest.PodsOn(t, ctx, kube, w.Namespace, w.DB)[dbNode]; len(got) != 1 {
		t.Errorf("db pod moved after a refused drain: %v", got)
	}
}

// drainPastPDB drains target while the web PDB allows no disruption: the drain must report
// the PDB and evict no web pod (during runs then, for more checks while it waits), until web
// gets a fifth replica; then it must finish, with target's web pods evicted, no temporary PDB
// left and nothing but DaemonSet pods on target (in leftNS; "" for every namespace).
func drainPastPDB(t *testing.T, ctx context.Context, kube kubernetes.Interface, w seed.Workloads, target string, opts nodes.DrainOptions, leftNS string, during func()) nodes.Summary {
	t.Helper()
	ns := w.Namespace
	webPods := kubetest.PodsOn(t, ctx, kube, ns, w.Web)[target]
	var progress testenv.Buffer
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
	blocked := fmt.Sprintf("waiting for PDB %s/%s (disruptionsAllowed=0)", ns, w.Web)
	poll(t, ctx, 2*time.Minute, "the drain to report the web PDB", func() (bool, string) {
		return strings.Contains(progress.String(), blocked), progress.String()
	})
	if during != nil {
		during()
	}
	for _, p := range webPods {
		got, err := kube.CoreV1().Pods(ns).Get(ctx, p, metav1.GetOptions{})
		if err != nil || got.DeletionTimestamp != nil {
			t.Fatalf("web pod %s evicted while its PDB allowed no disruption (err %v)", p, err)
		}
	}
	// A fifth replica raises disruptionsAllowed once ready; the drain must then proceed.
	if _, err := kube.AppsV1().Deployments(ns).Patch(ctx, w.Web, types.MergePatchType, []byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatalf("drain did not finish:\n%s", progress.String())
	}
	t.Logf("progress:\n%s", progress.String())
	if r.err != nil {
		t.Fatalf("drain: %v", r.err)
	}
	for _, p := range webPods {
		if !slices.Contains(r.sum.Nodes[0].Evicted, ns+"/"+p) {
			t.Errorf("web pod %s not in evicted %v", p, r.sum.Nodes[0].Evicted)
		}
	}
	if got := tempPDBs(t, ctx, kube); len(got) != 0 {
		t.Errorf("temporary PDBs left after the drain: %v", got)
	}
	left, err := kube.CoreV1().Pods(leftNS).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + target})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range left.Items {
		if !strings.HasPrefix(p.Name, w.Agent+"-") {
			t.Errorf("pod %s still on drained node %s", p.Name, target)
		}
	}
	return r.sum
}

// deleteNode deletes a drained Node and checks it is gone.
func deleteNode(t *testing.T, ctx context.Context, kube kubernetes.Interface, node string) {
	t.Helper()
	if err := nodes.DeleteNode(ctx, kube, node); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node %s still there: %v", node, err)
	}
}

// drainDownNode drains a Node that is down: refused without the consent to delete its pods
// (each refusal naming that consent), done with it. It returns the second drain's summary.
func drainDownNode(t *testing.T, ctx context.Context, kube kubernetes.Interface, victim string, opts nodes.DrainOptions) nodes.Summary {
	t.Helper()
	sum, err := nodes.Drain(ctx, kube, []string{victim}, opts)
	if !errors.Is(err, nodes.ErrRefused) {
		t.Fatalf("without consent: err %v, want ErrRefused (not a hang until the timeout)", err)
	}
	if len(sum.Nodes) != 1 || !sum.Nodes[0].Down || len(sum.Nodes[0].Refused) == 0 {
		t.Fatalf("summary without consent: %+v", sum)
	}
	for _, p := range sum.Nodes[0].Refused {
		if !strings.Contains(p.Hint, "--delete-pods-of-down-node") {
			t.Errorf("refusal of %s lacks the consent hint: %+v", p.Name, p)
		}
	}
	var progress testenv.Buffer
	opts.DeletePodsOfDownNode = true
	opts.Progress = &progress
	sum, err = nodes.Drain(ctx, kube, []string{victim}, opts)
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("with consent: %v", err)
	}
	if !sum.Nodes[0].Down {
		t.Error("summary does not say the node is down")
	}
	return sum
}
