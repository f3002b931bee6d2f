package plan

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// workers plans drain, Node deletion and host cleanup for drained workers and for removed
// masters that are also Nodes.
func (b *builder) workers() {
	targets := slices.Clone(b.t.Drain)
	for _, name := range b.t.Remove {
		if b.nodeFor(name) != "" && !slices.Contains(targets, name) {
			targets = append(targets, name)
		}
	}
	sort.Strings(targets)
	for _, name := range targets {
		node := b.nodeFor(name)
		if node == "" {
			b.warn("%s is not a Kubernetes Node: nothing to drain; its host is still cleaned", name)
		} else {
			var details []string
			ready := true
			for _, n := range b.f.Nodes {
				if n.Name != node {
					continue
				}
				ready = n.Ready
				for _, p := range n.Pods {
					line := fmt.Sprintf("%s %s/%s", p.Verdict, p.Namespace, p.Name)
					if p.Reason != "" {
						line += ": " + p.Reason
					}
					details = append(details, line)
					if p.Verdict == "refuse" {
						b.refuse("drain-refused", fmt.Sprintf("pod %s/%s on %s cannot be evicted safely: %s", p.Namespace, p.Name, node, p.Reason), p.Hint)
					}
				}
			}
			down := !ready || b.offline[name]
			params := EncodeParams(DrainParams{Node: node, NodeDown: down})
			summary := "cordon, guard PDBs, evict pods, wait for them to go"
			if down {
				summary = "node is NotReady: cordon, delete its pods so controllers reschedule them (consent recorded here)"
			}
			b.add(Step{ID: "nodes/drain/" + node, Kind: KindDrain, Host: name, Risk: Disruptive, Summary: summary,
				Details: details, Params: params, Relies: []string{"nodes." + node}})
			b.add(Step{ID: "nodes/delete/" + node, Kind: KindDeleteNode, Host: name, Risk: Disruptive,
				Summary: "delete the Node object", Params: EncodeParams(DeleteNodeParams{Node: node})})
		}
		if b.offline[name] {
			continue
		}
		b.add(Step{ID: "nodes/cleanup/" + name, Kind: KindCleanup, Host: name, Risk: Disruptive,
			Summary: "back up /etc/kubernetes, stop kubelet and kube-proxy, remove containers, mounts, CNI links, kube iptables chains; verify clean"})
	}
}

// nodeFor finds the Kubernetes Node of an inventory host, by name or address.
func (b *builder) nodeFor(name string) string {
	h, _ := b.f.Host(name)
	for _, n := range b.f.Nodes {
		if n.OfHost(name, h.Address) {
			return n.Name
		}
	}
	return ""
}

// wipeLeaving plans, when the operator asked for it, the removal of the secrets a leaving host
// still holds once it is out: its private keys and kubeconfigs with keys, and etcd's data
// directory (every Secret of the cluster), moved aside or removed. It is irreversible and runs
// after the host's units are stopped, behind the snapshot gate.
func (b *builder) wipeLeaving() {
	if b.t.WipeLeaving == "" {
		return
	}
	for _, name := range b.t.Remove {
		if b.offline[name] {
			b.warn("%s is offline: its keys and etcd data were not wiped; wipe them by hand if it comes back", name)
			continue
		}
		var dataDirs []string
		if hu, ok := b.f.Units[name]; ok && hu.Etcd != nil {
			if fl, ok := hu.Etcd.Flag("--data-dir"); ok && fl.Value != "" {
				dataDirs = append(dataDirs, fl.Value)
			}
		}
		what := "remove the private keys and kubeconfigs with keys under the PKI folders"
		switch {
		case len(dataDirs) > 0 && b.t.WipeLeaving == "move":
			what += ", move etcd's data " + strings.Join(dataDirs, ", ") + " aside into a 0700 folder"
		case len(dataDirs) > 0:
			what += ", remove etcd's data " + strings.Join(dataDirs, ", ")
		}
		b.add(Step{ID: KindWipe + "/" + name, Kind: KindWipe, Host: name, Risk: Irreversible,
			Summary: what + " (after proving the host serves nothing)",
			Params:  EncodeParams(WipeParams{Mode: b.t.WipeLeaving, DataDirs: dataDirs})})
	}
}

// DrainParams: nodes/drain.
type DrainParams struct {
	Node string `param:"node"`
	// NodeDown: the Node is NotReady; its pods are deleted rather than evicted.
	NodeDown bool `param:"node_down"`
}

func (DrainParams) ParamsKind() string { return KindDrain }

// DeleteNodeParams: nodes/delete.
type DeleteNodeParams struct {
	Node string `param:"node"`
}

func (DeleteNodeParams) ParamsKind() string { return KindDeleteNode }

// WipeParams: nodes/wipe.
type WipeParams struct {
	// Mode is "move" or "remove" (Target.WipeLeaving).
	Mode     string   `param:"mode"`
	DataDirs []string `param:"data_dirs"`
}

func (WipeParams) ParamsKind() string { return KindWipe }
