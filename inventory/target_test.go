package inventory

import (
	"strings"
	"testing"
)

const targetInventory = `format_version: 1
cluster: t
layout: seed003
kubeconfig: /dev/null
hosts:
  - {name: m1, address: 10.0.0.1, roles: [etcd, master, worker]}
  - {name: m2, address: 10.0.0.2, roles: [etcd, master, worker]}
  - {name: m3, address: 'fd00::3', roles: [etcd, master]}
  - {name: e4, address: 10.0.0.4, roles: [etcd]}
  - {name: w1, address: 10.0.0.11, roles: [worker]}
  - {name: worker-2, address: 10.0.0.12, roles: [worker]}
`

func TestCheckTarget(t *testing.T) {
	inv := mustParse(t, targetInventory)
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	tests := []struct {
		name                   string
		remove, drain, offline string
		want                   []string // every problem, in order, exactly
	}{
		{name: "a good shrink", remove: "m2,m3", drain: "w1", offline: "m3,w1"},
		{name: "etcd-only host removed", remove: "e4"},
		{name: "unknown host, listed names", remove: "m9",
			want: []string{`--remove m9: no host "m9" in the inventory (use a host name from the inventory: m1, m2, m3, e4, w1, worker-2)`}},
		{name: "typo of one host", drain: "wroker-2",
			want: []string{`--drain wroker-2: no host "wroker-2" in the inventory (did you mean worker-2? The inventory's hosts are m1, m2, m3, e4, w1, worker-2)`}},
		{name: "address instead of name", remove: "10.0.0.2", drain: "10.0.0.11",
			want: []string{
				"--remove 10.0.0.2: 10.0.0.2 is the address of m2, and hosts are named by their inventory name (use --remove m2)",
				"--drain 10.0.0.11: 10.0.0.11 is the address of w1, and hosts are named by their inventory name (use --drain w1)",
			}},
		{name: "address of a host given to the wrong flag", remove: "10.0.0.11", drain: "10.0.0.1",
			want: []string{
				"--remove 10.0.0.11: 10.0.0.11 is the address of w1, and hosts are named by their inventory name (w1 is a worker: use --drain w1)",
				"--drain 10.0.0.1: 10.0.0.1 is the address of m1, and hosts are named by their inventory name (m1 is a master and etcd host: use --remove m1)",
			}},
		{name: "IPv6 address written another way", remove: "fd00:0::3",
			want: []string{"--remove fd00:0::3: fd00:0::3 is the address of m3, and hosts are named by their inventory name (use --remove m3)"}},
		{name: "worker in --remove", remove: "m2,w1",
			want: []string{"--remove w1: w1 is a worker (neither a master nor an etcd host) (take a worker out with --drain w1)"}},
		{name: "master in --drain", drain: "m1",
			want: []string{"--drain m1: m1 is a master and etcd host, and --drain only takes workers out (retire it with --remove m1, which drains it too when it is a node)"}},
		{name: "etcd host in --drain", drain: "e4",
			want: []string{"--drain e4: e4 is an etcd host, and --drain only takes workers out (retire it with --remove e4, which drains it too when it is a node)"}},
		{name: "in both lists", remove: "m2", drain: "m2",
			want: []string{"--drain m2: m2 is in --remove too (drop it from --drain: --remove drains a master that is also a node)"}},
		{name: "every master and every etcd host", remove: "m1,m2,m3,e4",
			want: []string{
				"--remove m1,m2,m3: this removes every master, and the cluster needs at least one (keep one: remove fewer hosts)",
				"--remove m1,m2,m3,e4: this removes every etcd host, and the cluster needs at least one (keep one: remove fewer hosts)",
			}},
		{name: "every master", remove: "m1,m2,m3",
			want: []string{"--remove m1,m2,m3: this removes every master, and the cluster needs at least one (keep one: remove fewer hosts)"}},
		{name: "offline host not leaving", remove: "m3", offline: "m2",
			want: []string{"--offline m2: m2 is neither removed nor drained, and --offline only marks leaving hosts that are already down (add it to --remove or --drain, or drop it from --offline)"}},
		{name: "stray comma and a repeat", remove: "m3,,m3,m9,m9",
			want: []string{
				`--remove "": an empty host name (a stray comma?) (write the names separated by single commas, e.g. --remove m2,m3)`,
				`--remove m9: no host "m9" in the inventory (use a host name from the inventory: m1, m2, m3, e4, w1, worker-2)`,
			}},
		// Every problem at once, not only the first: one run tells the operator all there is
		// to fix.
		{name: "all at once", remove: "m1,m2,m3,w1,m7", drain: "e4", offline: "worker-2,10.0.0.1",
			want: []string{
				`--remove m7: no host "m7" in the inventory (use a host name from the inventory: m1, m2, m3, e4, w1, worker-2)`,
				"--offline 10.0.0.1: 10.0.0.1 is the address of m1, and hosts are named by their inventory name (use --offline m1)",
				"--remove w1: w1 is a worker (neither a master nor an etcd host) (take a worker out with --drain w1)",
				"--drain e4: e4 is an etcd host, and --drain only takes workers out (retire it with --remove e4, which drains it too when it is a node)",
				"--offline worker-2: worker-2 is neither removed nor drained, and --offline only marks leaving hosts that are already down (add it to --remove or --drain, or drop it from --offline)",
				"--remove m1,m2,m3: this removes every master, and the cluster needs at least one (keep one: remove fewer hosts)",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probs := CheckTarget(inv, split(tt.remove), split(tt.drain), split(tt.offline))
			var got []string
			for _, p := range probs {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// Where the masters are the etcd hosts, removing them all is one mistake, said once; where
// etcd runs apart, removing its hosts is refused though masters stay.
func TestCheckTargetRemoveAll(t *testing.T) {
	stacked := mustParse(t, "format_version: 1\ncluster: t\nlayout: seed003\nkubeconfig: /dev/null\nhosts:\n"+
		"  - {name: m1, address: 10.0.0.1, roles: [etcd, master]}\n  - {name: m2, address: 10.0.0.2, roles: [etcd, master]}\n")
	probs := CheckTarget(stacked, []string{"m1", "m2"}, nil, nil)
	if len(probs) != 1 || probs[0].String() != "--remove m1,m2: this removes every master and etcd host, and the cluster needs at least one of each (keep one: remove fewer hosts)" {
		t.Errorf("stacked: %v", probs)
	}
	external := mustParse(t, "format_version: 1\ncluster: t\nlayout: seed003\nkubeconfig: /dev/null\nhosts:\n"+
		"  - {name: m1, address: 10.0.0.1, roles: [master]}\n  - {name: e1, address: 10.0.0.2, roles: [etcd]}\n  - {name: e2, address: 10.0.0.3, roles: [etcd]}\n")
	probs = CheckTarget(external, []string{"e1", "e2"}, nil, nil)
	if len(probs) != 1 || probs[0].Code != "remove-all-etcd" || probs[0].Host != "e1,e2" {
		t.Errorf("external etcd: %v", probs)
	}
	if probs := CheckTarget(external, []string{"e2"}, nil, nil); len(probs) != 0 {
		t.Errorf("one etcd host left: %v", probs)
	}
}

func TestTargetError(t *testing.T) {
	one := &TargetError{Problems: []TargetProblem{{Code: "unknown-host", Flag: "--remove", Host: "m9", Reason: "no host", WayOut: "use m1"}}}
	if got := one.Error(); got != "--remove m9: no host (use m1)" {
		t.Errorf("one problem: %q", got)
	}
	two := &TargetError{Problems: append(one.Problems, TargetProblem{Code: "remove-all-master", Reason: "every master", WayOut: "keep one"})}
	if got := two.Error(); got != "the target has 2 problems:\n  --remove m9: no host (use m1)\n  every master (keep one)" {
		t.Errorf("two problems: %q", got)
	}
}
