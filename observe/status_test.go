package observe

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/apiserver"
	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/unitfile"
	"github.com/mastershrink/mastershrink/vip"
)

// kubeconfigFile writes a kubeconfig with one context per server, the first current.
func kubeconfigFile(t *testing.T, dir, name string, servers map[string]string, current string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Config\ncurrent-context: " + current + "\nclusters:\n")
	for ctx, srv := range servers {
		b.WriteString("- name: " + ctx + "\n  cluster: {server: " + srv + ", insecure-skip-tls-verify: true}\n")
	}
	b.WriteString("contexts:\n")
	for ctx := range servers {
		b.WriteString("- name: " + ctx + "\n  context: {cluster: " + ctx + ", user: admin}\n")
	}
	b.WriteString("users:\n- name: admin\n  user: {token: x}\n")
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKubeconfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	inv := kubeconfigFile(t, dir, "inv.kubeconfig", map[string]string{"inv": "https://10.0.0.1:6443"}, "inv")
	flag := kubeconfigFile(t, dir, "flag.kubeconfig", map[string]string{"flag": "https://10.0.0.2:6443", "other": "https://10.0.0.3:6443"}, "flag")
	env2 := kubeconfigFile(t, dir, "env2.kubeconfig", map[string]string{"env2": "https://10.0.0.4:6443"}, "env2")
	missing := filepath.Join(dir, "missing")

	cases := []struct {
		name    string
		opts    Options
		server  string
		wantErr string
	}{
		{name: "inventory", opts: Options{}, server: "https://10.0.0.1:6443"},
		{name: "flag over inventory", opts: Options{Kubeconfig: flag}, server: "https://10.0.0.2:6443"},
		{name: "flag over KUBECONFIG", opts: Options{Kubeconfig: flag, KubeconfigPaths: []string{env2}}, server: "https://10.0.0.2:6443"},
		// kubectl merges the list: the first file that sets current-context wins, and a
		// missing entry is skipped.
		{name: "KUBECONFIG list", opts: Options{KubeconfigPaths: []string{missing, env2, flag}}, server: "https://10.0.0.4:6443"},
		{name: "context from a later file of the list", opts: Options{KubeconfigPaths: []string{env2, flag}, Context: "other"}, server: "https://10.0.0.3:6443"},
		{name: "context", opts: Options{Kubeconfig: flag, Context: "other"}, server: "https://10.0.0.3:6443"},
		{name: "unknown context", opts: Options{Kubeconfig: flag, Context: "nope"}, wantErr: `context "nope"`},
		{name: "missing --kubeconfig", opts: Options{Kubeconfig: missing}, wantErr: "(--kubeconfig)"},
		// No fallback to ~/.kube/config: a KUBECONFIG of missing files is an error, not
		// another cluster.
		{name: "KUBECONFIG of missing files", opts: Options{KubeconfigPaths: []string{missing}}, wantErr: "(KUBECONFIG)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HOME", t.TempDir())
			c := Open(&inventory.Inventory{File: filepath.Join(dir, "inventory.yaml"), Kubeconfig: inv}, tc.opts)
			_, cfg, err := c.Kube()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tc.server {
				t.Errorf("server = %s, want %s", cfg.Host, tc.server)
			}
		})
	}
}

// statusFacts is a 3-master cluster as observed: m1..m3 with etcd and apiservers at
// 10.0.0.1-3, worker w1 whose proxy fronts them.
func statusFacts() plan.Facts {
	paths := inventory.Paths{APIServerPort: 6443, EtcdClientPort: 2379}
	f := plan.Facts{Cluster: "c", Units: map[string]plan.HostUnits{}, LB: map[string]lb.NodeConfig{}, APIServerReady: map[string]bool{}}
	var ups []lb.Server
	for i, name := range []string{"m1", "m2", "m3"} {
		addr := fmt.Sprintf("10.0.0.%d", i+1)
		f.Hosts = append(f.Hosts, plan.Host{Name: name, Address: addr, Roles: []inventory.Role{inventory.RoleEtcd, inventory.RoleMaster}, Paths: paths, Reachable: true})
		f.Etcd.Members = append(f.Etcd.Members, etcd.Member{ID: uint64(0xa0 + i), Name: name, PeerURLs: []string{"https://" + addr + ":2380"},
			ClientURLs: []string{"https://" + addr + ":2379"}, Healthy: true, Version: "3.5.21", RaftIndex: 100, RaftAppliedIndex: 100})
		comp := apiserver.Components{Host: name}
		comp.APIServer.Present = true
		comp.APIServer.Status.ActiveState = "active"
		comp.APIServer.Flags.EtcdServers = []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"}
		f.Units[name] = plan.HostUnits{Components: &comp}
		f.APIServerReady[name] = true
		ups = append(ups, lb.Server{Address: addr + ":6443"})
	}
	f.Hosts = append(f.Hosts, plan.Host{Name: "w1", Address: "10.0.0.9", Roles: []inventory.Role{inventory.RoleWorker}, Paths: paths, Reachable: true})
	f.Etcd.LeaderID = 0xa0
	f.Etcd.Members[0].IsLeader = true
	f.LB["w1"] = lb.NodeConfig{Host: "w1", Listen: "127.0.0.1:8443", Upstreams: []lb.Upstream{{Name: "backend", File: "/etc/nginx.conf", Servers: ups}}}
	return f
}

func TestStatusHealthyClusterHasNoDisagreement(t *testing.T) {
	s := BuildStatus(statusFacts(), "admin.kubeconfig")
	if s.Leader != "m1" || len(s.Members) != 3 {
		t.Fatalf("leader %q, %d members", s.Leader, len(s.Members))
	}
	for _, m := range s.Members {
		if m.Host != m.Name || !m.Healthy || m.Lag != 0 {
			t.Errorf("member %+v: want on its own host, healthy, no lag", m)
		}
	}
	if len(s.APIServers) != 3 || !s.APIServers[2].Ready || s.APIServers[2].Unit != "active" {
		t.Errorf("apiservers %+v", s.APIServers)
	}
	if got := s.Proxies[0].Upstreams[0].Servers[1]; got.Master != "m2" || got.Down {
		t.Errorf("w1's second server %+v, want m2 up", got)
	}
	if len(s.Disagreements) != 0 || len(s.Leftovers) != 0 {
		t.Errorf("disagreements %q, leftovers %q: want none", s.Disagreements, s.Leftovers)
	}
}

func TestStatusLagOfAFollower(t *testing.T) {
	f := statusFacts()
	f.Etcd.Members[2].RaftAppliedIndex = 40
	rows := MemberRows(f)
	if rows[2].Lag != 60 || rows[1].Lag != 0 {
		t.Errorf("lags %d, %d: want m3 60 behind the leader, m2 0", rows[2].Lag, rows[1].Lag)
	}
}

func TestStatusDisagreements(t *testing.T) {
	f := statusFacts()
	// m3's member was replaced by one on an address no host has, and m1 and m2's names are
	// swapped; m3 is marked down on w1's proxy.
	f.Etcd.Members[2].PeerURLs = []string{"https://10.0.0.77:2380"}
	f.Etcd.Members[0].Name, f.Etcd.Members[1].Name = "m2", "m1"
	f.LB["w1"].Upstreams[0].Servers[2].Down = true
	// m2's inventory names etcd.service, Debian's packaged unit, inactive there; etcd runs as
	// kube-etcd.service.
	if f.Units == nil {
		f.Units = map[string]plan.HostUnits{}
	}
	hu := f.Units["m2"]
	hu.Mismatches = []plan.UnitMismatch{{Field: "etcd_unit", Inventory: "etcd.service", State: "inactive", Program: "etcd", Found: "kube-etcd.service"}}
	f.Units["m2"] = hu
	got := strings.Join(Disagreements(f), "\n")
	for _, want := range []string{
		"etcd member m3 (a2) with peer URLs https://10.0.0.77:2380 is on no inventory host",
		"m3 has the etcd role, but no etcd member has its address (10.0.0.3)",
		"etcd member m2 (a0) has the peer address of m1, but its name is that of m2",
		"etcd member m1 (a1) has the peer address of m2, but its name is that of m1",
		"master m3 (10.0.0.3:6443) is in no upstream of the proxy on w1",
		"m2: the inventory's etcd_unit is etcd.service (inactive there), but etcd runs as kube-etcd.service: set etcd_unit: kube-etcd.service",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("disagreements lack %q:\n%s", want, got)
		}
	}
}

func TestStatusLeftovers(t *testing.T) {
	f := statusFacts()
	// After a shrink by hand: m3 left the inventory's masters and etcd, but w1's proxy
	// still sends to it and m1's apiserver still names its etcd.
	f.Hosts[2].Roles = []inventory.Role{inventory.RoleWorker}
	f.Etcd.Members = f.Etcd.Members[:2]
	got := strings.Join(Leftovers(f), "\n")
	for _, want := range []string{
		"w1: proxy upstream backend (/etc/nginx.conf) sends to 10.0.0.3:6443, which is no master of the inventory",
		"m1: kube-apiserver --etcd-servers names https://10.0.0.3:2379, which is no etcd member's client URL",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("leftovers lack %q:\n%s", want, got)
		}
	}
	// Marked down is what a shrink leaves on purpose (--lb-mode down): not a leftover.
	f.LB["w1"].Upstreams[0].Servers[2].Down = true
	if got := strings.Join(Leftovers(f), "\n"); strings.Contains(got, "proxy upstream") {
		t.Errorf("a server marked down counted as a leftover:\n%s", got)
	}
}

func TestStatusMemberByResolvedName(t *testing.T) {
	f := statusFacts()
	f.Etcd.Members[1].PeerURLs = []string{"https://etcd-2.example:2380"}
	f.Resolved = map[string][]string{"etcd-2.example": {"10.0.0.2"}}
	if rows := MemberRows(f); rows[1].Host != "m2" {
		t.Errorf("member with a peer URL by name maps to %q, want m2", rows[1].Host)
	}
}

// What each host was found to run: its units with the files systemd builds them from, its
// proxy and its keepalived; a host with none of them is left out.
func TestStatusFound(t *testing.T) {
	f := statusFacts()
	hu := f.Units["m1"]
	hu.Etcd = &unitfile.Unit{Name: "etcd.service", FragmentPath: "/etc/systemd/system/etcd.service",
		DropIns:          []string{"/etc/systemd/system/etcd.service.d/10-flags.conf"},
		EnvironmentFiles: []unitfile.EnvironmentFile{{Path: "/etc/etcd.env"}, {Path: "/etc/default/etcd", Optional: true, Missing: true}}}
	hu.EtcdStatus.ActiveState = "active"
	f.Units["m1"] = hu
	f.LB["w1"] = lb.NodeConfig{Host: "w1", Kind: lb.KindHAProxy, Main: "/etc/haproxy/haproxy.cfg"}
	f.VRRP = map[string]vip.Observed{"m1": {Path: vip.DefaultConfig, Active: true, Holds: []string{"10.0.0.100"},
		Config: vip.Config{Instances: []vip.Instance{{VIPs: []string{"10.0.0.100"}}}}}}
	rows := FoundRows(f)
	if len(rows) != 2 || rows[0].Host != "m1" || rows[1].Host != "w1" {
		t.Fatalf("rows %+v", rows)
	}
	if got := rows[0].Units[0]; got.Unit != "etcd.service" || got.State != "active" ||
		strings.Join(got.Files, " ") != "/etc/systemd/system/etcd.service /etc/systemd/system/etcd.service.d/10-flags.conf /etc/etcd.env" {
		t.Errorf("m1's etcd unit %+v", got)
	}
	if k := rows[0].Keepalived; k == nil || k.State != "active" || strings.Join(k.Holds, ",") != "10.0.0.100" {
		t.Errorf("m1's keepalived %+v", k)
	}
	if rows[1].Proxy != "haproxy" || rows[1].ProxyConfig != "/etc/haproxy/haproxy.cfg" {
		t.Errorf("w1's proxy %+v", rows[1])
	}
}
