package nodes

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	all := DrainOptions{IgnoreDaemonSets: true, Force: true, DeleteEmptyDirData: true, AllowSingleReplica: true}
	cases := []struct {
		name    string
		pod     Pod
		opts    DrainOptions
		verdict string
		hint    string
	}{
		{"mirror", Pod{Mirror: true, Owner: "Node/n1"}, all, VerdictSkip, "static pod"},
		{"daemonset refused", Pod{Owner: "DaemonSet/agent"}, DrainOptions{}, VerdictRefuse, "--ignore-daemonsets"},
		{"daemonset skipped", Pod{Owner: "DaemonSet/agent"}, DrainOptions{IgnoreDaemonSets: true}, VerdictSkip, ""},
		{"daemonset gone needs force", Pod{Owner: "DaemonSet/agent", OwnerGone: true}, DrainOptions{IgnoreDaemonSets: true}, VerdictRefuse, "--force"},
		{"bare refused", Pod{}, DrainOptions{}, VerdictRefuse, "--force"},
		{"bare forced", Pod{}, DrainOptions{Force: true}, VerdictEvict, ""},
		{"finished bare", Pod{Finished: true}, DrainOptions{}, VerdictEvict, ""},
		{"emptydir refused", Pod{Owner: "ReplicaSet/a", Replicas: 3, EmptyDir: true}, DrainOptions{}, VerdictRefuse, "--delete-emptydir-data"},
		{"emptydir consented", Pod{Owner: "ReplicaSet/a", Replicas: 3, EmptyDir: true}, DrainOptions{DeleteEmptyDirData: true}, VerdictEvict, ""},
		{"single replica refused", Pod{Owner: "StatefulSet/db", Replicas: 1}, DrainOptions{}, VerdictRefuse, "--allow-single-replica"},
		{"single replica cloneset", Pod{Owner: "CloneSet/c", Replicas: 1}, DrainOptions{}, VerdictRefuse, "--allow-single-replica"},
		{"single replica allowed", Pod{Owner: "ReplicaSet/a", Replicas: 1}, DrainOptions{AllowSingleReplica: true}, VerdictEvict, ""},
		{"job single pod is fine", Pod{Owner: "Job/j", Replicas: 0}, DrainOptions{}, VerdictEvict, ""},
		{"multi replica", Pod{Owner: "ReplicaSet/a", Replicas: 3}, DrainOptions{}, VerdictEvict, ""},
		{"down node refused", Pod{Owner: "ReplicaSet/a", Replicas: 3, NodeDown: true}, all, VerdictRefuse, "--delete-pods-of-down-node"},
		{"down node consented", Pod{Owner: "StatefulSet/db", Replicas: 1, NodeDown: true}, DrainOptions{DeletePodsOfDownNode: true}, VerdictEvict, ""},
		{"down node daemonset skipped", Pod{Owner: "DaemonSet/agent", NodeDown: true}, DrainOptions{IgnoreDaemonSets: true, DeletePodsOfDownNode: true}, VerdictSkip, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Classify(c.pod, c.opts)
			if got.Verdict != c.verdict {
				t.Fatalf("verdict %q (%s), want %q", got.Verdict, got.Reason, c.verdict)
			}
			if got.Verdict != VerdictEvict && got.Reason == "" {
				t.Fatalf("verdict %q without a reason", got.Verdict)
			}
			if c.hint != "" && !strings.Contains(got.Hint+got.Reason, c.hint) {
				t.Fatalf("hint %q / reason %q lacks %q", got.Hint, got.Reason, c.hint)
			}
		})
	}
}

func TestChainsPlan(t *testing.T) {
	save := `*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-ABC - [0:0]
:DOCKER - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -j DOCKER
-A KUBE-SERVICES -j KUBE-SVC-ABC
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp --dport 22 -j ACCEPT
COMMIT
`
	chains, scripts := chainsPlan(save)
	if len(chains["nat"]) != 2 || len(chains["filter"]) != 0 {
		t.Fatalf("chains %v", chains)
	}
	want := "*nat\n-D PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-F KUBE-SERVICES\n-F KUBE-SVC-ABC\n-X KUBE-SERVICES\n-X KUBE-SVC-ABC\nCOMMIT\n"
	if scripts["nat"] != want {
		t.Fatalf("script:\n%s\nwant:\n%s", scripts["nat"], want)
	}
	if _, ok := scripts["filter"]; ok {
		t.Fatal("filter table has no kube chains but got a script")
	}
}
