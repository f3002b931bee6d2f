package nodes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// UnknownNodeError is an argument that names neither a Node nor an inventory host a Node
// carries the address of. It lists the Nodes there are, for the operator's next try.
type UnknownNodeError struct {
	Arg   string
	Nodes []string
}

func (e *UnknownNodeError) Error() string {
	return fmt.Sprintf("node %q: no such Node in the cluster, nor an inventory host a Node carries the address of (Nodes: %s)", e.Arg, strings.Join(e.Nodes, ", "))
}

// ResolveNodes maps each argument to a Node name: the Node of that name, else the Node of the
// inventory host of that name (addressOf gives its address, false for no such host). The
// names come back in the arguments' order, each once. An argument naming nothing is an
// *UnknownNodeError, before anything is changed.
func ResolveNodes(ctx context.Context, kube kubernetes.Interface, args []string, addressOf func(host string) (string, bool)) ([]string, error) {
	list, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	var out []string
	for _, arg := range args {
		name := ""
		for i := range list.Items {
			if list.Items[i].Name == arg {
				name = arg
			}
		}
		if address, ok := addressOf(arg); ok && name == "" {
			for i := range list.Items {
				if ofHost(&list.Items[i], arg, address) {
					name = list.Items[i].Name
				}
			}
		}
		if name == "" {
			known := make([]string, 0, len(list.Items))
			for _, n := range list.Items {
				known = append(known, n.Name)
			}
			sort.Strings(known)
			return nil, &UnknownNodeError{Arg: arg, Nodes: known}
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// NodeNames lists the Nodes of inventory hosts (Node.OfHost: by the host's name or its
// address, addressOf giving it as for ResolveNodes), each once, in the hosts' order. A host
// may have none (already gone) or, with a stale Node of another name, more than one.
func NodeNames(ctx context.Context, kube kubernetes.Interface, hosts []string, addressOf func(host string) (string, bool)) ([]string, error) {
	list, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	var out []string
	for _, name := range hosts {
		address, _ := addressOf(name)
		for i := range list.Items {
			if n := &list.Items[i]; ofHost(n, name, address) && !slices.Contains(out, n.Name) {
				out = append(out, n.Name)
			}
		}
	}
	return out, nil
}

// ofHost is Node.OfHost for a Node of the API.
func ofHost(n *corev1.Node, name, address string) bool {
	return Node{Name: n.Name, Addresses: nodeAddresses(n)}.OfHost(name, address)
}

func nodeAddresses(n *corev1.Node) []string {
	var out []string
	for _, a := range n.Status.Addresses {
		out = append(out, a.Address)
	}
	return out
}

// ErrCleanupRefused: a host to clean still serves the cluster (its Node is still there, or
// the inventory makes it a master or etcd member), or that could not be checked. Nothing was
// changed.
var ErrCleanupRefused = errors.New("cleanup refused")

// cleanupRefusal is an ErrCleanupRefused whose message stands alone, with the way on.
type cleanupRefusal struct {
	msg string
	err error
}

func (e *cleanupRefusal) Error() string   { return e.msg }
func (e *cleanupRefusal) Unwrap() []error { return []error{ErrCleanupRefused, e.err} }

func refuseCleanup(err error, format string, args ...any) error {
	return &cleanupRefusal{msg: fmt.Sprintf(format, args...), err: err}
}

// CleanupTarget is a host a cleanup would clean, as the guard sees it.
type CleanupTarget struct {
	Name, Address string
	// ControlPlane says the inventory makes the host a master or an etcd member, whose PKI
	// the cleanup would remove.
	ControlPlane bool
}

// GuardCleanup refuses, with ErrCleanupRefused, hosts that still serve the cluster: a master
// or etcd member of the inventory (checked first, without the API), or a host whose Node is
// still there. A Node that cannot be looked for is a refusal too: the host may still run
// pods. inventory names the file in the way on ("nodes drain NODE -i FILE").
func GuardCleanup(ctx context.Context, kube func() (kubernetes.Interface, error), hosts []CleanupTarget, inventory string) error {
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Name
		if h.ControlPlane {
			return refuseCleanup(nil, "host %s is a master or etcd member in the inventory: retire it with 'mastershrink apply --remove %s' first, or use --force if it already is", h.Name, h.Name)
		}
	}
	client, err := kube()
	if err != nil {
		return refuseCleanup(err, "cannot check that the Nodes of %s are gone: %v (use --force to clean anyway)", strings.Join(names, ", "), err)
	}
	list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return refuseCleanup(err, "cannot check that the Nodes of %s are gone: list nodes: %v (use --force to clean anyway)", strings.Join(names, ", "), err)
	}
	for _, h := range hosts {
		for i := range list.Items {
			if n := &list.Items[i]; ofHost(n, h.Name, h.Address) {
				return refuseCleanup(nil, "host %s still has Node %s in the cluster: run 'mastershrink nodes drain %s -i %s --delete-node' first, or use --force", h.Name, n.Name, n.Name, inventory)
			}
		}
	}
	return nil
}
