package nodefacts

import "testing"

// A host's Node is found by its name or by one of its addresses, never by an empty address.
func TestOfHost(t *testing.T) {
	n := Node{Name: "k8s-node-1", Addresses: []string{"10.0.0.21", "k8s-node-1.example"}}
	for _, tc := range []struct {
		name, address string
		want          bool
	}{
		{"k8s-node-1", "", true},
		{"w1", "10.0.0.21", true},
		{"w1", "10.0.0.22", false},
		{"w1", "", false},
	} {
		if got := n.OfHost(tc.name, tc.address); got != tc.want {
			t.Errorf("OfHost(%q, %q) = %v", tc.name, tc.address, got)
		}
	}
	if (Node{Name: "x"}).OfHost("w1", "") {
		t.Error("a Node without addresses matched an empty address")
	}
}

func TestOwnerKind(t *testing.T) {
	for owner, want := range map[string]string{"ReplicaSet/web-5d8": "ReplicaSet", "": "", "bare": ""} {
		if got := (Pod{Owner: owner}).OwnerKind(); got != want {
			t.Errorf("OwnerKind(%q) = %q", owner, got)
		}
	}
}
