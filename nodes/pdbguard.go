package nodes

import (
	"context"
	"fmt"
	"sort"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// guardTargets are the multi-replica controllers with pods to evict and no PDB covering them.
func guardTargets(w *world, verdicts map[*podInfo]Pod) []*controller {
	seen := map[string]*controller{}
	for node, pis := range w.pods {
		if !nodeReady(w.nodes[node]) {
			continue
		}
		for _, pi := range pis {
			c := pi.ctrl
			if c == nil || c.Gone || c.Selector == nil || c.Replicas <= 1 || verdicts[pi].Verdict != VerdictEvict || pi.fact.HasPDB {
				continue
			}
			switch c.Kind {
			case "ReplicaSet", "StatefulSet", "CloneSet":
				seen[c.key()] = c
			}
		}
	}
	var out []*controller
	for _, c := range seen {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key() < out[j].key() })
	return out
}

func tempPDBName(c *controller) string {
	base := c.Name
	if len(base) > 200 {
		base = base[:200]
	}
	return base + "-mastershrink"
}

// createTempPDBs creates (or adopts, when an earlier run left one) a temporary PDB per
// controller and waits until the disruption controller has processed each: until then the
// Eviction API answers 429 for every covered pod.
func createTempPDBs(ctx context.Context, kube kubernetes.Interface, ctrls []*controller, maxUnavailable, opID string) ([]string, error) {
	mu := intstr.Parse(maxUnavailable)
	var made []string
	for _, c := range ctrls {
		pdb := &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{
				Name: tempPDBName(c), Namespace: c.Namespace,
				Labels:      map[string]string{LabelManagedBy: managedByValue},
				Annotations: map[string]string{AnnotationOperationID: opID, "mastershrink.io/guards": c.Kind + "/" + c.Name},
			},
			Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &mu, Selector: c.Selector},
		}
		api := kube.PolicyV1().PodDisruptionBudgets(c.Namespace)
		_, err := api.Create(ctx, pdb, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			old, gerr := api.Get(ctx, pdb.Name, metav1.GetOptions{})
			if gerr != nil {
				return made, fmt.Errorf("get pdb %s/%s: %w", c.Namespace, pdb.Name, gerr)
			}
			if old.Labels[LabelManagedBy] != managedByValue {
				continue // someone else's PDB of that name covers it now
			}
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, AnnotationOperationID, opID)
			_, err = api.Patch(ctx, pdb.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		}
		if err != nil {
			return made, fmt.Errorf("create temporary pdb %s/%s: %w", c.Namespace, pdb.Name, err)
		}
		made = append(made, c.Namespace+"/"+pdb.Name)
	}
	for _, nn := range made {
		ns, name := splitNN(nn)
		if err := waitPDBObserved(ctx, kube, ns, name); err != nil {
			return made, err
		}
	}
	return made, nil
}

func waitPDBObserved(ctx context.Context, kube kubernetes.Interface, ns, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		p, err := kube.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && p.Status.ObservedGeneration >= p.Generation {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the disruption controller to process pdb %s/%s: %w", ns, name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// RemoveTemporaryPDBs deletes the PDBs a drain with this operation ID created. Drain calls it
// itself; a resumed operation calls it to clean up after a crash.
func RemoveTemporaryPDBs(ctx context.Context, kube kubernetes.Interface, operationID string) ([]string, error) {
	list, err := kube.PolicyV1().PodDisruptionBudgets("").List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + managedByValue})
	if err != nil {
		return nil, fmt.Errorf("list temporary pdbs of %s: %w", operationID, err)
	}
	var removed []string
	var errs []error
	for _, p := range list.Items {
		if p.Annotations[AnnotationOperationID] != operationID {
			continue
		}
		err := kube.PolicyV1().PodDisruptionBudgets(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete temporary pdb %s/%s: %w", p.Namespace, p.Name, err))
			continue
		}
		removed = append(removed, p.Namespace+"/"+p.Name)
	}
	return removed, joinErrs(errs)
}

func splitNN(s string) (string, string) {
	for i := range len(s) {
		if s[i] == '/' {
			return s[:i], s[i+1:]
		}
	}
	return "", s
}
