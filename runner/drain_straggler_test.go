package runner

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/mastershrink/mastershrink/plan"
)

// A scheduler that has not yet seen the cordon places a replacement on the draining Node
// (seen in the lab): nodes/drain evicts it too, so nodes/delete then finds the Node drained.
func TestDrainEvictsPodsArrivingAfterTheCordon(t *testing.T) {
	ctx := context.Background()
	kube := drainAPI(podOn("w2", "web-1", "ReplicaSet", "web"))
	late := false
	kube.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "eviction" && !late {
			late = true
			if err := kube.Tracker().Add(podOn("w2", "web-late", "ReplicaSet", "web")); err != nil {
				t.Error(err)
			}
		}
		return false, nil, nil
	})
	drain := mkStep(plan.KindDrain, "w2", plan.DrainParams{Node: "w2"})
	del := mkStep(plan.KindDeleteNode, "w2", plan.DeleteNodeParams{Node: "w2"})
	r := apiRun(kube, drain)
	out, err := apply(t, r, drain)
	if err != nil {
		t.Fatal(err)
	}
	if !late || !strings.Contains(out.note, "2 pods evicted") {
		t.Errorf("the pod placed after the cordon was not evicted: %+v", out)
	}
	pods, _ := kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	for _, p := range pods.Items {
		if p.Spec.NodeName == "w2" && p.Status.Phase == corev1.PodRunning {
			t.Errorf("pod %s still on w2 after the drain", p.Name)
		}
	}
	if _, err := apply(t, r, del); err != nil {
		t.Errorf("delete after the drain: %v", err)
	}
}
