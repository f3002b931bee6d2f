package kubetest_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastershrink/mastershrink/testenv/kubetest"
)

func TestStartAndStopNode(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{Nodes: []string{"k1", "k2"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 2 {
		t.Fatalf("want 2 nodes, got %d", len(list.Items))
	}
	out, err := exec.Command(env.Kubectl, "--kubeconfig", env.Kubeconfig, "get", "nodes", "--no-headers").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get nodes: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "k1") || !strings.Contains(string(out), " Ready") {
		t.Fatalf("kubectl does not see Ready nodes:\n%s", out)
	}
	if err := env.StopNode("k1"); err != nil {
		t.Fatal(err)
	}
	n, err := env.Client.CoreV1().Nodes().Get(ctx, "k2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" && c.Status != "True" {
			t.Fatalf("k2 went NotReady too: %+v", c)
		}
	}
}
