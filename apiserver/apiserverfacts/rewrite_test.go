package apiserverfacts

import (
	"reflect"
	"testing"
)

func TestSurvivingEtcdServers(t *testing.T) {
	current := []string{"https://10.0.0.3:2379", "http://127.0.0.1:2379", "https://10.0.0.1:2379", "https://etcd.example:2379", "https://10.0.0.2:2379"}
	got, findings := survivingEtcdServers(current, []string{"https://10.0.0.1:2379", "https://10.0.0.4:2379"}, lowerSet([]string{"10.0.0.2", "10.0.0.3"}))
	want := []string{"http://127.0.0.1:2379", "https://10.0.0.1:2379", "https://etcd.example:2379", "https://10.0.0.4:2379"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if len(findings) != 1 || findings[0].Address != "etcd.example" {
		t.Errorf("findings %+v, want one for etcd.example", findings)
	}
	if got, _ := survivingEtcdServers([]string{"https://10.0.0.2:2379"}, nil, lowerSet([]string{"10.0.0.2"})); len(got) != 0 {
		t.Errorf("all removed: %v", got)
	}
}

func TestMentions(t *testing.T) {
	cases := []struct {
		v, a string
		want bool
	}{
		{"https://10.0.0.1:6443", "10.0.0.1", true},
		{"https://10.0.0.11:6443", "10.0.0.1", false},
		{"https://110.0.0.1:6443", "10.0.0.1", false},
		{"/events#https://10.0.0.1:2379", "10.0.0.1", true},
		{"m2.example", "m2", false},
		{"https://m2:6443", "m2", true},
		{"https://[fd00::2]:6443", "fd00::2", true},
	}
	for _, c := range cases {
		if got := mentions(c.v, c.a); got != c.want {
			t.Errorf("mentions(%q, %q) = %v", c.v, c.a, got)
		}
	}
}
