package etcdfacts

import (
	"encoding/json"
	"reflect"
	"testing"
)

// IDs travel through plan files as hex strings: a JSON number would lose the low bits of an
// ID above 2^53, and the plan would name another member than the one observed.
func TestFactsJSONKeepsIDs(t *testing.T) {
	f := Facts{ClusterID: 0xcdf818194e3a8c32, LeaderID: 0x8e9e05c52164694d, Members: []Member{
		{ID: 0x8e9e05c52164694d, Name: "m1", PeerURLs: []string{"https://10.0.0.1:2380"}, Healthy: true, IsLeader: true},
		{ID: 0xfffffffffffffff1, Name: "m2", PeerURLs: []string{"https://10.0.0.2:2380"}, Error: "context deadline exceeded"},
	}}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var back Facts
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, f) {
		t.Fatalf("round trip:\n%+v\nwant\n%+v\n(JSON %s)", back, f, b)
	}
	if m, ok := back.MemberByName("m2"); !ok || FormatID(m.ID) != "fffffffffffffff1" {
		t.Fatalf("m2: %+v", m)
	}
	if l, ok := back.Leader(); !ok || l.Name != "m1" {
		t.Fatalf("leader %+v", l)
	}
}

func TestParseID(t *testing.T) {
	for in, want := range map[string]uint64{"8e9e05c52164694d": 0x8e9e05c52164694d, "0x1a": 0x1a} {
		if got, err := ParseID(in); err != nil || got != want {
			t.Errorf("ParseID(%q) = %x, %v", in, got, err)
		}
	}
	if _, err := ParseID("m1"); err == nil {
		t.Error("a member name parsed as an ID")
	}
}

func TestQuorum(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3} {
		if got := Quorum(n); got != want {
			t.Errorf("Quorum(%d) = %d, want %d", n, got, want)
		}
	}
}
