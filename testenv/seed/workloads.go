package seed

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// Workloads names what SeedWorkloads created in its namespace.
type Workloads struct {
	Namespace string
	// Web is a Deployment of 4 replicas with its own PDB (named like it, maxUnavailable 1).
	Web string
	// API is a Deployment of 3 replicas without a PDB: the drain's PDB guard must add one.
	API string
	// Scratch is a Deployment of 2 replicas whose pods use an emptyDir volume.
	Scratch string
	// DB is a StatefulSet of 1 replica: draining it means downtime.
	DB string
	// Agent is a DaemonSet on every node.
	Agent string
	// Bare is a pod without a controller, bound to the first node.
	Bare string
	// Pods is the number of pods the namespace holds once all are running.
	Pods int
}

// KwokToleration lets pods onto nodes carrying kwok's customary taint.
var KwokToleration = corev1.Toleration{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}

// SeedWorkloads creates a namespace with every kind of pod a drain must tell apart, placed
// on the given nodes, and waits (until ctx's deadline, or 2 minutes) for all to run.
func SeedWorkloads(ctx context.Context, kube kubernetes.Interface, ns string, nodes []string) (Workloads, error) {
	if len(nodes) == 0 {
		return Workloads{}, fmt.Errorf("seed workloads in %s: no nodes", ns)
	}
	w := Workloads{Namespace: ns, Web: "web", API: "api", Scratch: "scratch", DB: "db", Agent: "agent", Bare: "bare"}
	if err := EnsureNamespace(ctx, kube, ns); err != nil {
		return w, err
	}
	if err := CreateDeployment(ctx, kube, ns, w.Web, 4, nodes, false); err != nil {
		return w, err
	}
	if err := CreatePDB(ctx, kube, ns, w.Web, intstr.FromInt32(1)); err != nil {
		return w, err
	}
	if err := CreateDeployment(ctx, kube, ns, w.API, 3, nodes, false); err != nil {
		return w, err
	}
	if err := CreateDeployment(ctx, kube, ns, w.Scratch, 2, nodes, true); err != nil {
		return w, err
	}
	one := int32(1)
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: w.DB, Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &one, ServiceName: w.DB,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": w.DB}},
			Template: podTemplate(w.DB, nodes, false),
		},
	}
	if _, err := kube.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		return w, fmt.Errorf("create statefulset %s/%s: %w", ns, w.DB, err)
	}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: w.Agent, Namespace: ns},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": w.Agent}},
			Template: podTemplate(w.Agent, nodes, false),
		},
	}
	if _, err := kube.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		return w, fmt.Errorf("create daemonset %s/%s: %w", ns, w.Agent, err)
	}
	bare := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: w.Bare, Namespace: ns, Labels: map[string]string{"app": w.Bare}},
		Spec:       podTemplate(w.Bare, nil, false).Spec,
	}
	bare.Spec.NodeName = nodes[0]
	if _, err := kube.CoreV1().Pods(ns).Create(ctx, bare, metav1.CreateOptions{}); err != nil {
		return w, fmt.Errorf("create pod %s/%s: %w", ns, w.Bare, err)
	}
	w.Pods = 4 + 3 + 2 + 1 + len(nodes) + 1
	return w, WaitPodsRunning(ctx, kube, ns, w.Pods)
}

// SeedBulk creates count Deployments of replicas pods each (named bulk-N), each with a PDB of
// maxUnavailable 25% when withPDB, spread over nodes, and waits for all pods to run.
func SeedBulk(ctx context.Context, kube kubernetes.Interface, ns string, nodes []string, count, replicas int, withPDB bool) error {
	if err := EnsureNamespace(ctx, kube, ns); err != nil {
		return err
	}
	for i := range count {
		name := fmt.Sprintf("bulk-%d", i)
		if err := CreateDeployment(ctx, kube, ns, name, int32(replicas), nodes, false); err != nil {
			return err
		}
		if withPDB {
			if err := CreatePDB(ctx, kube, ns, name, intstr.FromString("25%")); err != nil {
				return err
			}
		}
	}
	return WaitPodsRunning(ctx, kube, ns, count*replicas)
}

// EnsureNamespace creates ns unless it exists.
func EnsureNamespace(ctx context.Context, kube kubernetes.Interface, ns string) error {
	_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	return nil
}

// CreateDeployment creates a Deployment whose pods (label app=name) may run only on nodes
// (any node when nodes is empty).
func CreateDeployment(ctx context.Context, kube kubernetes.Interface, ns, name string, replicas int32, nodes []string, emptyDir bool) error {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name, nodes, emptyDir),
		},
	}
	if _, err := kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create deployment %s/%s: %w", ns, name, err)
	}
	return nil
}

// CreatePDB creates a policy/v1 PDB named name selecting app=name.
func CreatePDB(ctx context.Context, kube kubernetes.Interface, ns, name string, maxUnavailable intstr.IntOrString) error {
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: &maxUnavailable,
			Selector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		},
	}
	if _, err := kube.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create pdb %s/%s: %w", ns, name, err)
	}
	return nil
}

func podTemplate(app string, nodes []string, emptyDir bool) corev1.PodTemplateSpec {
	spec := corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: "main", Image: "registry.k8s.io/pause:3.10",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
			}},
		}},
		Tolerations: []corev1.Toleration{KwokToleration},
		// The scheduler's default scoring barely tells fake nodes apart: ask for a spread.
		TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
		}},
		// Fake pods stop at once; a long grace period would only slow tests down.
		TerminationGracePeriodSeconds: new(int64(1)),
	}
	if len(nodes) > 0 {
		spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: nodes}},
			}}},
		}}
	}
	if emptyDir {
		spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}
	}
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}}, Spec: spec}
}

// WaitPodsRunning polls until ns holds exactly want pods, all Running and Ready and none
// terminating, or ctx ends (a 2-minute deadline applies when ctx has none).
func WaitPodsRunning(ctx context.Context, kube kubernetes.Interface, ns string, want int) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
	}
	var running, total int
	for {
		list, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			running, total = 0, len(list.Items)
			for _, p := range list.Items {
				if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(&p) {
					running++
				}
			}
			if running == want && total == want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d running pods in %s (have %d running of %d): %w", want, ns, running, total, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
