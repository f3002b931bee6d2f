package nodes_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/mastershrink/mastershrink/nodes"
)

// apiNode is a Node of the API named name that carries these addresses.
func apiNode(name string, addresses ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, a := range addresses {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	return n
}

func TestOfHost(t *testing.T) {
	n := nodes.Node{Name: "node-a", Addresses: []string{"10.0.0.5", "node-a.example"}}
	for _, tc := range []struct {
		host, address string
		want          bool
	}{
		{"node-a", "10.9.9.9", true}, // by name
		{"w1", "10.0.0.5", true},     // by address
		{"w1", "10.0.0.6", false},    // neither
		{"w1", "", false},            // a host without an address matches no Node without its name
		{"node-a", "", true},         // by name, no address known
		{"node", "10.0.0.50", false}, // no prefix matches
	} {
		if got := n.OfHost(tc.host, tc.address); got != tc.want {
			t.Errorf("OfHost(%q, %q) = %t, want %t", tc.host, tc.address, got, tc.want)
		}
	}
	if (nodes.Node{Name: "x"}).OfHost("w1", "") {
		t.Error("a Node without addresses matched a host without an address")
	}
}

// addressesOf is the address of each inventory host, as the commands give it.
func addressesOf(hosts map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		a, ok := hosts[name]
		return a, ok
	}
}

func TestResolveNodes(t *testing.T) {
	kube := fake.NewClientset(apiNode("n1", "10.0.0.1"), apiNode("n2", "10.0.0.2"), apiNode("w3", "10.0.0.3"))
	inv := addressesOf(map[string]string{"w1": "10.0.0.1", "w3": "10.0.0.2", "w9": "10.0.0.9"})
	for _, tc := range []struct {
		name string
		args []string
		want []string
		bad  string // the argument the error names
	}{
		{"by Node name", []string{"n2"}, []string{"n2"}, ""},
		{"by inventory address", []string{"w1"}, []string{"n1"}, ""},
		{"a Node of that name wins over the host's address", []string{"w3"}, []string{"w3"}, ""},
		{"each Node once, in the arguments' order", []string{"n2", "w1", "n1", "n2"}, []string{"n2", "n1"}, ""},
		{"an inventory host no Node carries", []string{"n1", "w9"}, nil, "w9"},
		{"neither a Node nor a host", []string{"nope"}, nil, "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := nodes.ResolveNodes(context.Background(), kube, tc.args, inv)
			if tc.bad == "" {
				if err != nil || !slices.Equal(got, tc.want) {
					t.Fatalf("got %v, %v; want %v", got, err, tc.want)
				}
				return
			}
			var unknown *nodes.UnknownNodeError
			if !errors.As(err, &unknown) || unknown.Arg != tc.bad {
				t.Fatalf("got %v, %v; want an UnknownNodeError for %q", got, err, tc.bad)
			}
			// The way on: the Nodes there are, sorted.
			if !strings.Contains(err.Error(), "(Nodes: n1, n2, w3)") {
				t.Errorf("the error does not list the Nodes: %v", err)
			}
		})
	}
}

func TestNodeNames(t *testing.T) {
	// node-1 carries w1's address; w2 has a Node of its name and a stale one at its address.
	kube := fake.NewClientset(apiNode("node-1", "10.0.0.1"), apiNode("w2", "10.0.0.2"), apiNode("old-w2", "10.0.0.2"), apiNode("n9", "10.0.0.9"))
	inv := addressesOf(map[string]string{"w1": "10.0.0.1", "w2": "10.0.0.2", "w3": "10.0.0.3"})
	got, err := nodes.NodeNames(context.Background(), kube, []string{"w2", "w1", "w3", "n9", "w1"}, inv)
	if err != nil || !slices.Equal(got, []string{"old-w2", "w2", "node-1", "n9"}) {
		t.Errorf("got %v, %v; want w2's two Nodes (API order), w1's, none for w3, n9 by name", got, err)
	}
}

func TestResolveNodesListFails(t *testing.T) {
	kube := fake.NewClientset()
	kube.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("apiserver away")
	})
	_, err := nodes.ResolveNodes(context.Background(), kube, []string{"n1"}, addressesOf(nil))
	var unknown *nodes.UnknownNodeError
	if err == nil || errors.As(err, &unknown) || !strings.Contains(err.Error(), "list nodes: apiserver away") {
		t.Errorf("err %v, want the list's error, not an unknown Node", err)
	}
}

func TestGuardCleanup(t *testing.T) {
	kube := fake.NewClientset(apiNode("node-7", "10.0.0.7"), apiNode("w8"))
	client := func() (kubernetes.Interface, error) { return kube, nil }
	listFails := fake.NewClientset()
	listFails.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("forbidden")
	})
	asked := false
	for _, tc := range []struct {
		name  string
		kube  func() (kubernetes.Interface, error)
		hosts []nodes.CleanupTarget
		want  []string // in the refusal; none: no refusal
	}{
		{"gone", client, []nodes.CleanupTarget{{Name: "w1", Address: "10.0.0.1"}}, nil},
		{"Node by address", client, []nodes.CleanupTarget{{Name: "w1", Address: "10.0.0.1"}, {Name: "w7", Address: "10.0.0.7"}},
			[]string{"host w7 still has Node node-7 in the cluster", "'mastershrink nodes drain node-7 -i inv.yaml --delete-node' first, or use --force"}},
		{"Node by name", client, []nodes.CleanupTarget{{Name: "w8", Address: "10.0.0.8"}}, []string{"host w8 still has Node w8"}},
		{"master or etcd", func() (kubernetes.Interface, error) { asked = true; return kube, nil },
			[]nodes.CleanupTarget{{Name: "w1"}, {Name: "m1", ControlPlane: true}},
			[]string{"host m1 is a master or etcd member in the inventory", "retire it with 'mastershrink apply --remove m1' first, or use --force"}},
		{"no client", func() (kubernetes.Interface, error) { return nil, errors.New("no kubeconfig") },
			[]nodes.CleanupTarget{{Name: "w1"}, {Name: "w2"}},
			[]string{"cannot check that the Nodes of w1, w2 are gone: no kubeconfig (use --force to clean anyway)"}},
		{"list fails", func() (kubernetes.Interface, error) { return listFails, nil },
			[]nodes.CleanupTarget{{Name: "w1"}}, []string{"cannot check that the Nodes of w1 are gone: list nodes: forbidden"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := nodes.GuardCleanup(context.Background(), tc.kube, tc.hosts, "inv.yaml")
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, nodes.ErrCleanupRefused) {
				t.Fatalf("err %v, want ErrCleanupRefused", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the refusal does not say %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error(), nodes.ErrCleanupRefused.Error()) {
				t.Errorf("the sentinel's words are repeated: %v", err)
			}
		})
	}
	if asked {
		t.Error("the API was asked about a master: the inventory alone refuses it")
	}
}
