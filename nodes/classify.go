package nodes

import "fmt"

// Classify gives a pod its verdict, reason and hint from its facts and the operator's
// options, the way kubectl drain's filters do. It is pure: the planner calls it to show
// what a drain would do, Drain calls it to decide.
func Classify(p Pod, opts DrainOptions) Pod {
	set := func(verdict, reason, hint string) Pod {
		p.Verdict, p.Reason, p.Hint = verdict, reason, hint
		return p
	}
	kind := p.OwnerKind()
	switch {
	case p.Mirror:
		return set(VerdictSkip, "mirror pod of a static manifest: the kubelet owns it", "remove its manifest from the kubelet's static pod folder")
	case kind == "DaemonSet" && !p.OwnerGone:
		if opts.IgnoreDaemonSets {
			return set(VerdictSkip, "managed by "+p.Owner+": the DaemonSet would recreate it on this node", "")
		}
		return set(VerdictRefuse, "managed by "+p.Owner, "use --ignore-daemonsets to leave DaemonSet pods in place")
	case p.Finished:
		return set(VerdictEvict, "pod has finished: deleting it loses nothing", "")
	case p.NodeDown:
		if opts.DeletePodsOfDownNode {
			return set(VerdictEvict, "node is down: the pod is deleted so its controller recreates it elsewhere", "")
		}
		return set(VerdictRefuse, "node is down: an eviction would leave the pod Terminating forever",
			"consent with --delete-pods-of-down-node to delete its pods (grace 0) once the node is confirmed down")
	}
	var notes []string
	if p.Owner == "" || p.OwnerGone {
		if !opts.Force {
			why := "no controller: once evicted it is gone for good"
			if p.OwnerGone {
				why = fmt.Sprintf("its controller %s no longer exists: once evicted it is gone for good", p.Owner)
			}
			return set(VerdictRefuse, why, "use --force to evict it anyway")
		}
		notes = append(notes, "unmanaged pod evicted for good (--force)")
	}
	if p.EmptyDir {
		if !opts.DeleteEmptyDirData {
			return set(VerdictRefuse, "uses emptyDir: its local data is lost on eviction", "use --delete-emptydir-data to evict it anyway")
		}
		notes = append(notes, "emptyDir data deleted (--delete-emptydir-data)")
	}
	if p.Replicas == 1 && (kind == "ReplicaSet" || kind == "StatefulSet" || kind == "CloneSet") {
		if !opts.AllowSingleReplica {
			return set(VerdictRefuse, "only replica of "+p.Owner+": evicting it means downtime",
				"scale "+p.Owner+" up first, or use --allow-single-replica to accept the downtime")
		}
		notes = append(notes, "single replica evicted (--allow-single-replica)")
	}
	reason := ""
	for i, n := range notes {
		if i > 0 {
			reason += "; "
		}
		reason += n
	}
	return set(VerdictEvict, reason, "")
}
