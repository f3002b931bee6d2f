package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/mastershrink/mastershrink/observe"
)

func TestObserveOptionsKubeconfig(t *testing.T) {
	env := map[string]string{"KUBECONFIG": "/a:/b::/a"}
	g := &globalOptions{Getenv: func(k string) string { return env[k] }}
	if o := g.observeOptions(); !reflect.DeepEqual(o.KubeconfigPaths, []string{"/a", "/b"}) || o.Kubeconfig != "" {
		t.Errorf("KUBECONFIG: got %q %q, want the list /a, /b without repeats", o.Kubeconfig, o.KubeconfigPaths)
	}
	g.Kubeconfig, g.Context = "/flag", "ctx"
	if o := g.observeOptions(); o.Kubeconfig != "/flag" || o.KubeconfigPaths != nil || o.Context != "ctx" {
		t.Errorf("--kubeconfig must win over KUBECONFIG: got %+v", o)
	}
	env = map[string]string{}
	g.Kubeconfig = ""
	if o := g.observeOptions(); o.Kubeconfig != "" || o.KubeconfigPaths != nil {
		t.Errorf("neither set: the inventory's kubeconfig must stand, got %+v", o)
	}
}

func TestKubeFlagsParse(t *testing.T) {
	cmd := newRootCmd(streams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}, In: strings.NewReader("")})
	cmd.SetArgs([]string{"--kubeconfig", "/k", "--context=prod", "version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if v, _ := cmd.PersistentFlags().GetString("kubeconfig"); v != "/k" {
		t.Errorf("--kubeconfig = %q", v)
	}
	if v, _ := cmd.PersistentFlags().GetString("context"); v != "prod" {
		t.Errorf("--context = %q", v)
	}
}

func TestWriteDataYAMLHasTheJSONKeys(t *testing.T) {
	v := struct {
		FormatVersion int               `json:"format_version"`
		Steps         []string          `json:"steps"`
		Backups       map[string]string `json:"backups,omitempty"`
	}{2, []string{"etcd/snapshot"}, map[string]string{"m1:/etc/x": "/etc/x.bak-1"}}
	var j, y bytes.Buffer
	if err := writeData(&j, v, "json"); err != nil {
		t.Fatal(err)
	}
	if err := writeData(&y, v, "yaml"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(y.String(), "format_version: 2") {
		t.Errorf("yaml lacks the json key format_version:\n%s", y.String())
	}
	var fromJSON, fromYAML map[string]any
	if err := json.Unmarshal(j.Bytes(), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(y.Bytes(), &fromYAML); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Errorf("json and yaml differ:\n%v\n%v", fromJSON, fromYAML)
	}
}

func TestPlanOutputYAMLAccepted(t *testing.T) {
	if err := validOutput("yaml", "table", "json", "yaml"); err != nil {
		t.Error(err)
	}
	err := validOutput("yml", "table", "json", "yaml")
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "want table, json or yaml") {
		t.Errorf("-o yml: %v (exit %d), want a usage error listing the formats", err, exitCode(err))
	}
}

func TestCompletionOfOutputFormats(t *testing.T) {
	for _, sub := range []string{"status", "plan"} {
		out, _, code := run(t, "__complete", sub, "-o", "")
		if code != exitOK || !strings.Contains(out, "table\njson\nyaml\n") {
			t.Errorf("%s -o completion (exit %d):\n%s", sub, code, out)
		}
	}
}

// healthyStatus is a 3-master cluster as status shows it when all is well.
func healthyStatus() observe.Status {
	s := observe.Status{Cluster: "t", Leader: "m1", LeaderHost: "m1"}
	for i, h := range []string{"m1", "m2", "m3"} {
		addr := fmt.Sprintf("10.88.0.1%d", i+1)
		s.Members = append(s.Members, observe.MemberStatus{ID: fmt.Sprintf("%x", i+1), Name: h, Host: h, Healthy: true, Leader: i == 0})
		s.APIServers = append(s.APIServers, observe.APIServerStatus{Host: h, Address: addr + ":6443", Unit: "active", Ready: true})
		s.Certs = append(s.Certs, observe.CertStatus{Host: h, Path: "/etc/kubernetes/ssl/kubernetes.pem", CN: "kubernetes", NotAfter: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)})
	}
	return s
}

func TestStatusProblems(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		change func(s *observe.Status)
		want   []string // one substring per problem, in order
	}{
		{"healthy", func(*observe.Status) {}, nil},
		{"member unhealthy", func(s *observe.Status) {
			s.Members[1].Healthy, s.Members[1].Error = false, "dial tcp 10.88.0.12:2379: connect: connection refused\nmore"
		}, []string{"etcd member m2 (2 on m2) is unhealthy: dial tcp 10.88.0.12:2379: connect: connection refused"}},
		{"no leader", func(s *observe.Status) { s.Leader, s.Members[0].Leader = "", false }, []string{"etcd: no leader"}},
		{"etcd unreachable", func(s *observe.Status) { s.Members, s.Leader = nil, "" }, []string{"etcd: no member answered"}},
		{"apiserver not ready", func(s *observe.Status) { s.APIServers[2].Ready = false }, []string{"apiserver on m3 (10.88.0.13:6443): not ready"}},
		{"apiserver unit stopped", func(s *observe.Status) { s.APIServers[0].Unit, s.APIServers[0].Ready = "inactive", false }, []string{"apiserver on m1 (10.88.0.11:6443): unit inactive"}},
		{"host unreachable", func(s *observe.Status) {
			s.Unreachable = []observe.HostProblem{{Host: "w1", Error: "ssh: connect to 10.88.0.21:22: i/o timeout"}}
		}, []string{"host w1 unreachable: ssh: connect"}},
		{"certificate expired", func(s *observe.Status) { s.Certs[1].NotAfter = now.Add(-time.Hour) }, []string{"certificate m2:/etc/kubernetes/ssl/kubernetes.pem (kubernetes) expired 2026-11-30T23:00:00Z"}},
		{"certificate expiring is not a problem", func(s *observe.Status) { s.Certs[1].NotAfter = now.Add(time.Hour) }, nil},
		{"leftover", func(s *observe.Status) { s.Leftovers = []string{"w1: proxy upstream sends to 10.88.0.13:6443"} }, []string{"leftover: w1: proxy upstream"}},
		{"disagreement", func(s *observe.Status) {
			s.Disagreements = []string{"m3 has the etcd role, but no etcd member has its address"}
		}, []string{"disagreement with the inventory: m3 has the etcd role"}},
		{"several", func(s *observe.Status) {
			s.Members[2].Healthy = false
			s.APIServers[2].Ready = false
			s.Disagreements = []string{"x"}
		}, []string{"etcd member m3", "apiserver on m3", "disagreement with the inventory: x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := healthyStatus()
			tc.change(&s)
			got := statusProblems(s, now)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems %q, want %d", len(got), got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) || strings.Contains(got[i], "\n") {
					t.Errorf("problem %d = %q, want one line with %q", i, got[i], w)
				}
			}
		})
	}
}

// The exit code cron reads: 5 for an unhealthy cluster, 0 for a healthy one; the problems
// end the table and are a field of -o json.
func TestStatusExitCode(t *testing.T) {
	now := time.Now()
	for _, healthy := range []bool{true, false} {
		s := healthyStatus()
		if !healthy {
			s.APIServers[1].Ready = false
		}
		var out bytes.Buffer
		err := writeStatus(&out, s, "table", now)
		want, wantLine := exitOK, "problems: none"
		if !healthy {
			want, wantLine = exitCheck, "problems: 1\n  - apiserver on m2"
		}
		if code := exitCode(err); code != want || !strings.Contains(out.String(), wantLine) {
			t.Errorf("healthy %v: exit %d (%v), want %d; table lacks %q:\n%s", healthy, code, err, want, wantLine, out.String())
		}
		var doc bytes.Buffer
		if code := exitCode(writeStatus(&doc, s, "json", now)); code != want {
			t.Errorf("healthy %v: -o json exit %d, want %d", healthy, code, want)
		}
		var back struct {
			Cluster  string   `json:"cluster"`
			Problems []string `json:"problems"`
		}
		if err := json.Unmarshal(doc.Bytes(), &back); err != nil || back.Cluster != "t" || len(back.Problems) != map[bool]int{true: 0, false: 1}[healthy] || back.Problems == nil {
			t.Errorf("healthy %v: -o json %v: %+v\n%s", healthy, err, back, doc.String())
		}
	}
}
