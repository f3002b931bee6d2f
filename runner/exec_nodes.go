package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/nodes"
	"github.com/mastershrink/mastershrink/plan"
)

var (
	_ = register(plan.KindDrain, typed((*run).drainStep))
	_ = register(plan.KindDeleteNode, typed((*run).deleteNodeStep))
	_ = register(plan.KindCleanup, untyped((*run).cleanupStep))
	_ = register(plan.KindWipe, typed((*run).wipeStep))
)

// ---- nodes

func (r *run) nodeGone(ctx context.Context, node string) (bool, string, error) {
	kube, _, err := r.c.Kube()
	if err != nil {
		return false, "", err
	}
	_, err = kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, "Node " + node + " is gone", nil
	}
	return false, "", err
}

// nodeExecutor is a step that removes Node node from the API: done once the Node is gone,
// whatever the journal says, so a resumed run does not act on it twice.
func (r *run) nodeExecutor(phase, node string, apply func(ctx context.Context, kube kubernetes.Interface) (outcome, error)) executor {
	return executor{
		phase: phase,
		done:  func(ctx context.Context) (bool, string, error) { return r.nodeGone(ctx, node) },
		apply: func(ctx context.Context) (outcome, error) {
			kube, _, err := r.c.Kube()
			if err != nil {
				return outcome{}, err
			}
			return apply(ctx, kube)
		},
	}
}

func (r *run) drainStep(st plan.Step, p plan.DrainParams) executor {
	node := p.Node
	return r.nodeExecutor("draining node "+node, node, func(ctx context.Context, kube kubernetes.Interface) (outcome, error) {
		opts := nodes.DefaultDrainOptions()
		opts.Progress = r.detail()
		opts.DeletePodsOfDownNode = p.NodeDown
		var evicted, deleted, skipped int
		var warnings []string
		// A scheduler that had not yet seen the cordon can place a replacement on the
		// node while it drains: drain again until the Node runs nothing left to evict
		// (nodes/delete proves the same before it deletes).
		for round := 0; ; round++ {
			sum, err := nodes.Drain(ctx, kube, []string{node}, opts)
			if err != nil {
				return outcome{}, err
			}
			skipped = 0
			for _, n := range sum.Nodes {
				evicted += len(n.Evicted)
				deleted += len(n.Deleted)
				skipped += len(n.Skipped)
			}
			if sum.RemoveErr != "" {
				warnings = append(warnings, "temporary PDBs left: "+sum.RemoveErr)
			}
			perr := provesDrained(ctx, kube, node)
			if perr == nil {
				break
			}
			if !errors.Is(perr, ErrNotDrained) || round == 4 {
				return outcome{}, fmt.Errorf("pods keep arriving on the cordoned Node after %d drains: %w", round+1, perr)
			}
			select {
			case <-ctx.Done():
				return outcome{}, ctx.Err()
			case <-time.After(time.Second):
			}
		}
		return outcome{warnings: warnings, changes: []Change{{Node: node, Action: "cordon+drain", Detail: fmt.Sprintf("%d evicted, %d deleted", evicted, deleted)}},
			note: fmt.Sprintf("cordoned; %d pods evicted, %d deleted, %d left (DaemonSets)", evicted, deleted, skipped)}, nil
	})
}

func (r *run) deleteNodeStep(st plan.Step, p plan.DeleteNodeParams) executor {
	node := p.Node
	return r.nodeExecutor("deleting node "+node, node, func(ctx context.Context, kube kubernetes.Interface) (outcome, error) {
		if err := provesDrained(ctx, kube, node); err != nil {
			return outcome{}, err
		}
		if err := nodes.DeleteNode(ctx, kube, node); err != nil {
			return outcome{}, err
		}
		return outcome{changes: []Change{{Node: node, Action: "delete"}}, note: "Node deleted"}, nil
	})
}

// ErrNotDrained means a Node a step would delete still has its pods, or was never cordoned.
var ErrNotDrained = errors.New("the Node is not drained")

// provesDrained proves, from the API now, that node is cordoned and runs nothing but
// DaemonSet and static (mirror) pods, or pods already terminating: deleting a Node that still
// runs its workload orphans the pods, whatever the journal says of its drain.
func provesDrained(ctx context.Context, kube kubernetes.Interface, node string) error {
	n, err := kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	way := fmt.Sprintf("run nodes/drain/%s first (or make a new plan); the Node was not deleted", node)
	if !n.Spec.Unschedulable {
		return fmt.Errorf("%w: Node %s is not cordoned: %s", ErrNotDrained, node, way)
	}
	pods, err := kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return err
	}
	var left []string
	for _, p := range pods.Items {
		if p.Spec.NodeName != node || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
			continue
		}
		if slices.ContainsFunc(p.OwnerReferences, func(o metav1.OwnerReference) bool { return o.Kind == "DaemonSet" }) {
			continue
		}
		left = append(left, p.Namespace+"/"+p.Name)
	}
	if len(left) > 0 {
		return fmt.Errorf("%w: Node %s still runs %d pods (%s): %s", ErrNotDrained, node, len(left), strings.Join(left[:min(3, len(left))], ", "), way)
	}
	return nil
}

func (r *run) cleanupStep(st plan.Step) executor {
	return executor{
		phase: "cleaning host " + st.Host,
		done: func(ctx context.Context) (bool, string, error) {
			h, ih, err := r.host(ctx, st.Host)
			if err != nil {
				return false, "", err
			}
			rep, err := nodes.Verify(ctx, h, nodes.CleanupOptionsFor(ih.Paths.KubeletUnit, ih.Paths.KubeProxyUnit))
			// Checks that cannot run (no iptables in a container) are reported by the apply;
			// what counts here is that nothing is found.
			return err == nil && len(rep.Leftovers) == 0, "no Kubernetes left on the host", err
		},
		apply: func(ctx context.Context) (outcome, error) {
			h, ih, err := r.leftHost(ctx, st.Host)
			if err != nil {
				return outcome{}, err
			}
			opts := nodes.CleanupOptionsFor(ih.Paths.KubeletUnit, ih.Paths.KubeProxyUnit)
			rep, err := nodes.Cleanup(ctx, h, opts)
			if err != nil {
				return outcome{}, err
			}
			var changes []Change
			var warnings []string
			for _, a := range rep.Actions {
				if a.Result == nodes.ResultDone {
					changes = append(changes, Change{Host: st.Host, Action: "cleanup:" + a.Step, Detail: a.Target})
				}
			}
			// Failed actions, and what the backup holds (the kubelet's keys, maybe the CA's).
			warnings = append(warnings, rep.Warnings()...)
			v, err := nodes.Verify(ctx, h, opts)
			if err != nil {
				return outcome{}, err
			}
			for _, l := range v.Leftovers {
				warnings = append(warnings, fmt.Sprintf("left on %s: %s %s (remove with: %s)", st.Host, l.Check, l.Item, l.Fix))
			}
			for _, p := range v.Problems {
				warnings = append(warnings, "could not check: "+p)
			}
			var backups map[string]string
			if rep.Backup != "" {
				backups = map[string]string{st.Host + ":/etc/kubernetes": rep.Backup}
			}
			return outcome{changes: changes, warnings: warnings, backups: backups,
				note: fmt.Sprintf("%d actions, backup %s", len(changes), rep.Backup)}, nil
		},
	}
}

// ErrStillControlPlane means a host to clean still serves the control plane.
var ErrStillControlPlane = errors.New("refusing to clean a host that still serves the control plane")

// leftHost is the host called name, once proveLeft has proven it left the control plane: what
// cleans or wipes a host reaches it only through here.
func (r *run) leftHost(ctx context.Context, name string) (host.Host, *inventory.Host, error) {
	h, ih, err := r.host(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	if err := r.proveLeft(ctx, name, h, ih); err != nil {
		return nil, nil, err
	}
	return h, ih, nil
}

// unitUp is unit's ActiveState on h and whether the unit runs: one still activating
// counts, as it is about to serve.
func unitUp(ctx context.Context, h host.Host, unit string) (string, bool, error) {
	sd, err := h.Systemd(ctx)
	if err != nil {
		return "", false, err
	}
	defer sd.Close()
	st, err := sd.Status(ctx, unit)
	if err != nil {
		return "", false, err
	}
	return st.ActiveState, st.ActiveState == "active" || st.ActiveState == "activating", nil
}

// proveLeft proves, on the live cluster, that a host about to be cleaned (its PKI and
// containers removed) is neither an etcd member nor running an apiserver, whatever the plan
// says it is: a typo in --drain, or a run resumed after the cluster changed, must not wipe a
// survivor.
func (r *run) proveLeft(ctx context.Context, name string, h host.Host, ih *inventory.Host) error {
	cli, err := r.c.Etcd(ctx)
	if err != nil {
		return err
	}
	members, err := cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("cannot prove %s is no etcd member: %w", name, err)
	}
	addrs := append([]string{ih.Address}, r.p.Facts.Resolved[ih.Address]...)
	for _, m := range members {
		for _, u := range m.PeerURLs {
			if ph := plan.PeerHost(u); slices.Contains(addrs, ph) || overlaps(r.p.Facts.Resolved[ph], addrs) {
				return fmt.Errorf("%w: %s is etcd member %s (%x); nothing was cleaned", ErrStillControlPlane, name, m.Name, m.ID)
			}
		}
	}
	if ih.Paths.APIServerUnit == "" {
		return nil
	}
	state, running, err := unitUp(ctx, h, ih.Paths.APIServerUnit)
	if err != nil {
		return err
	}
	if running {
		return fmt.Errorf("%w: %s runs %s (%s); nothing was cleaned", ErrStillControlPlane, name, ih.Paths.APIServerUnit, state)
	}
	return nil
}

// wipeStep removes the secrets a leaving host still holds (see plan's wipeLeaving), after
// proving again that the host is no etcd member, runs no apiserver and no etcd.
func (r *run) wipeStep(st plan.Step, p plan.WipeParams) executor {
	dataDirs := p.DataDirs
	find := func(ctx context.Context, h host.Host) (nodes.LeftSecrets, error) {
		return nodes.FindLeftSecrets(ctx, h, nil, dataDirs, 0)
	}
	return executor{
		phase: "wiping the secrets left on " + st.Host,
		done: func(ctx context.Context) (bool, string, error) {
			h, _, err := r.host(ctx, st.Host)
			if err != nil {
				return false, "", err
			}
			left, err := find(ctx, h)
			return err == nil && left.Empty(), "no private key or etcd data left", err
		},
		apply: func(ctx context.Context) (outcome, error) {
			h, ih, err := r.leftHost(ctx, st.Host)
			if err != nil {
				return outcome{}, err
			}
			if unit := ih.Paths.EtcdUnit; unit != "" {
				_, running, err := unitUp(ctx, h, unit)
				if err != nil {
					return outcome{}, err
				}
				if running {
					return outcome{}, fmt.Errorf("%w: %s still runs %s; nothing was wiped", ErrStillControlPlane, st.Host, unit)
				}
			}
			left, err := find(ctx, h)
			if err != nil {
				return outcome{}, err
			}
			aside := ""
			if p.Mode == "move" {
				aside = "/var/backups/mastershrink/left-" + time.Now().UTC().Format("20060102T150405Z")
			}
			did, err := nodes.WipeLeftSecrets(ctx, h, left, aside, 0)
			var changes []Change
			for _, d := range did {
				changes = append(changes, Change{Host: st.Host, Action: "wipe", Detail: d})
			}
			if err != nil {
				return outcome{changes: changes}, err
			}
			note := fmt.Sprintf("%d key files removed", len(left.KeyFiles))
			if len(left.DataDirs) > 0 {
				if aside != "" {
					note += ", etcd data moved to " + aside + " (0700; it holds every Secret of the cluster)"
				} else {
					note += ", etcd data removed"
				}
			}
			return outcome{changes: changes, note: note}, nil
		},
	}
}
