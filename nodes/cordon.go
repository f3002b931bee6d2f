package nodes

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Cordon marks the Node unschedulable. changed is false when it already was.
func Cordon(ctx context.Context, kube kubernetes.Interface, name string) (changed bool, err error) {
	return setUnschedulable(ctx, kube, name, true)
}

// Uncordon makes the Node schedulable again. changed is false when it already was.
func Uncordon(ctx context.Context, kube kubernetes.Interface, name string) (changed bool, err error) {
	return setUnschedulable(ctx, kube, name, false)
}

func setUnschedulable(ctx context.Context, kube kubernetes.Interface, name string, on bool) (bool, error) {
	verb := map[bool]string{true: "cordon", false: "uncordon"}[on]
	n, err := kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("%s node %s: %w", verb, name, err)
	}
	if n.Spec.Unschedulable == on {
		return false, nil
	}
	// A merge patch touches only this field, so it cannot clobber the kubelet's updates.
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
	if _, err := kube.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return false, fmt.Errorf("%s node %s: %w", verb, name, err)
	}
	return true, nil
}

// DeleteNode deletes the Node object; a Node already gone is success.
func DeleteNode(ctx context.Context, kube kubernetes.Interface, name string) error {
	err := kube.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete node %s: %w", name, err)
	}
	return nil
}
