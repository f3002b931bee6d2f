package kubetest

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mastershrink/mastershrink/testenv/seed"
)

// StartSeeded starts a control plane with these kwok nodes and seeds the drain workloads in
// ns (seed.SeedWorkloads), for the tests of drains: the package's and the command's. The
// context ends after 5 minutes or with the test.
func StartSeeded(t *testing.T, ns string, nodes ...string) (*Env, seed.Workloads, context.Context) {
	t.Helper()
	env := Start(t, Options{Nodes: nodes})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	w, err := seed.SeedWorkloads(ctx, env.Client, ns, nodes)
	if err != nil {
		t.Fatal(err)
	}
	return env, w, ctx
}

// PodsOn maps each node to the names of an app's pods on it (label app=APP).
func PodsOn(t *testing.T, ctx context.Context, kube kubernetes.Interface, ns, app string) map[string][]string {
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

// NodeRunning is the first of nodes that runs pods of every one of apps: a drain of it meets
// them all. The test fails when none does.
func NodeRunning(t *testing.T, ctx context.Context, kube kubernetes.Interface, ns string, nodes []string, apps ...string) string {
	t.Helper()
	on := make([]map[string][]string, len(apps))
	for i, app := range apps {
		on[i] = PodsOn(t, ctx, kube, ns, app)
	}
	for _, n := range nodes {
		all := true
		for i := range apps {
			all = all && len(on[i][n]) > 0
		}
		if all {
			return n
		}
	}
	t.Fatalf("no node of %v runs pods of every one of %v: %v", nodes, apps, on)
	return ""
}

// Unschedulable reports whether a Node is cordoned.
func Unschedulable(t *testing.T, ctx context.Context, kube kubernetes.Interface, node string) bool {
	t.Helper()
	n, err := kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Spec.Unschedulable
}
