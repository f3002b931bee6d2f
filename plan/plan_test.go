package plan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/apiserver"
	"github.com/mastershrink/mastershrink/certs"
	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/internal/golden"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/nodes"
	"github.com/mastershrink/mastershrink/unitfile"
	"github.com/mastershrink/mastershrink/unitfile/unitfiletest"
)

var observedAt = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// cluster describes a fixture cluster in the layout of seed 003 (172.72.0.x addresses, etcd
// members named by IP), from which facts are built by parsing real unit and nginx files.
type cluster struct {
	masters     int
	workers     int
	leader      int             // 1-based master index of the etcd leader
	unhealthy   map[int]string  // master index -> etcd error
	unreachable map[string]bool // host name -> SSH error
	lagging     map[int]uint64  // master index -> entries behind
	noCAKey     bool
	// lbOnly limits a worker's upstream to these masters (to make an LB that would be empty).
	lbOnly map[string][]int
	// lbOther makes a node's proxy front other servers only (a registry, not the apiservers).
	lbOther map[string]bool
	// haproxy gives these nodes Debian's haproxy as their proxy instead of nginx.
	haproxy  map[string]bool
	pods     map[string][]nodes.Pod
	notReady map[string]bool
}

func masterIP(i int) string { return fmt.Sprintf("172.72.0.%d", 94+i) }
func workerIP(i int) string { return fmt.Sprintf("172.72.0.%d", 100+i) }

func readFixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func (c cluster) facts(t *testing.T) Facts {
	t.Helper()
	paths := inventory.Paths{
		EtcdUnit: "kube-etcd", APIServerUnit: "kube-apiserver", ControllerManagerUnit: "kube-controller-manager",
		SchedulerUnit: "kube-scheduler", NginxUnit: "kube-nginx", NginxBinary: "/approot/data/k8s/bin/nginx",
		NginxPrefix: "/approot/data/k8s/kube-nginx", NginxConfig: "/approot/data/k8s/kube-nginx/kube-nginx.conf",
		NginxListen: "127.0.0.1:8443", PKIDir: "/etc/kubernetes/ssl", CACert: "/etc/kubernetes/ssl/ca.pem",
		CAKey: "/etc/kubernetes/ssl/ca-key.pem", CAConfig: "/etc/kubernetes/ssl/ca-config.json",
		APIServerPort: 6443, EtcdClientPort: 2379, EtcdPeerPort: 2380,
	}
	f := Facts{Cluster: "seed003", Layout: "seed003", ObservedAt: observedAt,
		Units: map[string]HostUnits{}, LB: map[string]lb.NodeConfig{}, APIServerReady: map[string]bool{}}
	var initial, servers, apiservers, upstreams []string
	for i := 1; i <= c.masters; i++ {
		ip := masterIP(i)
		initial = append(initial, ip+"=https://"+ip+":2380")
		servers = append(servers, "https://"+ip+":2379")
		apiservers = append(apiservers, ip+":6443")
		upstreams = append(upstreams, "      server "+ip+":6443 max_fails=3 fail_timeout=30s;")
	}
	nginx := func(name string) lb.NodeConfig {
		if c.haproxy[name] {
			var srv []string
			for i := 1; i <= c.masters; i++ {
				srv = append(srv, fmt.Sprintf("    server m%d %s:6443 check", i, masterIP(i)))
			}
			text := "global\n    daemon\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 3m\n    timeout server 3m\n\n" +
				"frontend kube-apiserver\n    bind 127.0.0.1:8443\n    default_backend kube-apiserver\n\nbackend kube-apiserver\n    balance roundrobin\n" +
				strings.Join(srv, "\n") + "\n"
			cfg, err := lb.ParseHAProxy(name, "/etc/haproxy/haproxy.cfg", text, apiservers, nil)
			if err != nil {
				t.Fatalf("haproxy fixture for %s: %v", name, err)
			}
			return cfg
		}
		ups := upstreams
		if c.lbOther[name] {
			ups = []string{"      server 172.72.0.200:5000 max_fails=3 fail_timeout=30s;"}
		}
		if only, ok := c.lbOnly[name]; ok {
			ups = nil
			for _, i := range only {
				ups = append(ups, "      server "+masterIP(i)+":6443 max_fails=3 fail_timeout=30s;")
			}
		}
		text := strings.Replace(readFixture(t, "kube-nginx.conf.tmpl"), "UPSTREAMS", strings.Join(ups, "\n"), 1)
		cfg, err := lb.Parse(name, paths.NginxConfig, map[string]string{paths.NginxConfig: text}, apiservers)
		if err != nil {
			t.Fatalf("nginx fixture for %s: %v", name, err)
		}
		return cfg
	}
	var members []etcd.Member
	for i := 1; i <= c.masters; i++ {
		name, ip := fmt.Sprintf("m%d", i), masterIP(i)
		h := Host{Name: name, Address: ip, Roles: []inventory.Role{inventory.RoleEtcd, inventory.RoleMaster}, Paths: paths, Reachable: !c.unreachable[name]}
		if !h.Reachable {
			h.Error = "dial tcp " + ip + ":22: connect: no route to host"
		}
		f.Hosts = append(f.Hosts, h)
		m := etcd.Member{ID: uint64(0x26c65c850c80d420 + i), Name: ip, PeerURLs: []string{"https://" + ip + ":2380"},
			ClientURLs: []string{"https://" + ip + ":2379"}, Healthy: true, Version: "3.5.21", DBSize: 4500000,
			RaftTerm: 263, RaftIndex: 642041, RaftAppliedIndex: 642041 - c.lagging[i], IsLeader: i == c.leader}
		if msg, bad := c.unhealthy[i]; bad {
			m.Healthy, m.Error, m.IsLeader = false, msg, false
		}
		members = append(members, m)
		if m.IsLeader {
			f.Etcd.LeaderID = m.ID
		}
		if !h.Reachable {
			continue
		}
		sub := strings.NewReplacer("SELF", ip, "INITIAL", strings.Join(initial, ","),
			"ETCDSERVERS", strings.Join(servers, ","), "COUNT", fmt.Sprint(c.masters))
		// The units are read the way observe reads them, from files on a host (here a folder).
		root := t.TempDir()
		dh := &unitfiletest.DirHost{HostName: name, Root: root, Statuses: map[string]host.UnitStatus{}}
		for unitName, tmpl := range map[string]string{"kube-etcd": "kube-etcd.service.tmpl", "kube-apiserver": "kube-apiserver.service.tmpl"} {
			p := filepath.Join(root, "etc/systemd/system", unitName+".service")
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(sub.Replace(readFixture(t, tmpl))), 0o644); err != nil {
				t.Fatal(err)
			}
			dh.Statuses[unitName+".service"] = host.UnitStatus{LoadState: "loaded", ActiveState: "active", UnitFileState: "enabled",
				FragmentPath: "/etc/systemd/system/" + unitName + ".service"}
		}
		ctx := context.Background()
		etcdUnit, err := unitfile.Read(ctx, dh, "kube-etcd")
		if err != nil {
			t.Fatalf("etcd unit fixture: %v", err)
		}
		comps, err := apiserver.Observe(ctx, dh, paths)
		if err != nil {
			t.Fatalf("control-plane fixture: %v", err)
		}
		f.Units[name] = HostUnits{Etcd: etcdUnit, EtcdStatus: dh.Statuses["kube-etcd.service"], Components: &comps}
		f.LB[name] = nginx(name)
		f.APIServerReady[name] = true
	}
	f.Etcd.ClusterID = 0x5957c47fd14d3795
	f.Etcd.Members = members
	for i := 1; i <= c.workers; i++ {
		name := fmt.Sprintf("w%d", i)
		f.Hosts = append(f.Hosts, Host{Name: name, Address: workerIP(i), Roles: []inventory.Role{inventory.RoleWorker}, Paths: paths, Reachable: !c.unreachable[name]})
		f.LB[name] = nginx(name)
		f.Nodes = append(f.Nodes, nodes.Node{Name: name, Ready: !c.notReady[name], Addresses: []string{workerIP(i)}, Pods: c.pods[name]})
	}
	// One etcd certificate copied to every master and one apiserver certificate, as seed 003.
	var ips []string
	for i := 1; i <= c.masters; i++ {
		ips = append(ips, masterIP(i))
	}
	etcdInfo := certs.Info{Subject: certs.Name{CommonName: "etcd"}, Serial: "4a1f", IPAddresses: append(append([]string{}, ips...), "127.0.0.1"), KeyAlgorithm: "rsa", KeySize: 2048}
	apiInfo := certs.Info{Subject: certs.Name{CommonName: "kubernetes"}, Serial: "7b2c",
		DNSNames:    []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster", "kubernetes.default.svc.cluster.local"},
		IPAddresses: append(append([]string{}, ips...), "127.0.0.1", "10.254.0.1"), KeyAlgorithm: "rsa", KeySize: 2048}
	for i := 1; i <= c.masters; i++ {
		name := fmt.Sprintf("m%d", i)
		if c.unreachable[name] {
			continue
		}
		f.Certs = append(f.Certs,
			Cert{Host: name, Path: "/etc/kubernetes/ssl/etcd.pem", KeyPath: "/etc/kubernetes/ssl/etcd-key.pem", UsedBy: []string{"kube-etcd --cert-file", "kube-apiserver --etcd-certfile"}, Info: etcdInfo},
			Cert{Host: name, Path: "/etc/kubernetes/ssl/kubernetes.pem", KeyPath: "/etc/kubernetes/ssl/kubernetes-key.pem", UsedBy: []string{"kube-apiserver --tls-cert-file"}, Info: apiInfo})
	}
	f.CA = CA{Host: "m1", CertPath: paths.CACert, KeyPath: paths.CAKey, ConfigPath: paths.CAConfig, KeyPresent: !c.noCAKey, ConfigPresent: true}
	return f
}

var seed003 = cluster{masters: 3, workers: 2, leader: 2}

func TestBuildGolden(t *testing.T) {
	cases := []struct {
		name   string
		c      cluster
		target Target
		refuse []string // refusal codes expected, in order
	}{
		{name: "seed003-3to1", c: seed003, target: Target{Remove: []string{"m2", "m3"}}},
		{name: "5to3", c: cluster{masters: 5, workers: 2, leader: 1}, target: Target{Remove: []string{"m4", "m5"}}},
		{name: "leader-stays-3to2", c: cluster{masters: 3, workers: 2, leader: 1}, target: Target{Remove: []string{"m3"}}},
		{name: "leaving-member-down", c: cluster{masters: 3, workers: 2, leader: 1, unhealthy: map[int]string{3: "context deadline exceeded"}, unreachable: map[string]bool{"m3": true}},
			target: Target{Remove: []string{"m2", "m3"}, Offline: []string{"m3"}}},
		{name: "worker-drain", c: cluster{masters: 3, workers: 2, leader: 1, pods: map[string][]nodes.Pod{"w1": {
			{Namespace: "default", Name: "web-5d9f-abcde", Owner: "ReplicaSet/web-5d9f", Verdict: "evict", Replicas: 3, HasPDB: true},
			{Namespace: "kube-system", Name: "node-exporter-x2x", Owner: "DaemonSet/node-exporter", Verdict: "skip", Reason: "DaemonSet pod", Hint: "DaemonSet pods are ignored"},
		}}}, target: Target{Drain: []string{"w1"}}},
		{name: "lb-remove-mode", c: seed003, target: Target{Remove: []string{"m3"}, LBMode: "remove"}},
		// A mixed fleet: w1 and the leaving m3 run haproxy, the others nginx.
		{name: "haproxy-mixed", c: cluster{masters: 3, workers: 2, leader: 2, haproxy: map[string]bool{"w1": true, "m3": true}},
			target: Target{Remove: []string{"m2", "m3"}}},

		{name: "refuse-unknown-host", c: seed003, target: Target{Remove: []string{"m9"}}, refuse: []string{"unknown-host"}},
		{name: "refuse-remove-all", c: seed003, target: Target{Remove: []string{"m1", "m2", "m3"}}, refuse: []string{"remove-all-masters", "remove-all-etcd"}},
		{name: "refuse-quorum", c: cluster{masters: 3, workers: 0, leader: 1, unhealthy: map[int]string{2: "connection refused"}},
			target: Target{Remove: []string{"m3"}}, refuse: []string{"survivor-unhealthy", "quorum-at-risk"}},
		{name: "refuse-two-members-one-down", c: cluster{masters: 2, workers: 0, leader: 1, unhealthy: map[int]string{2: "connection refused"}, unreachable: map[string]bool{"m2": true}},
			target: Target{Remove: []string{"m2"}, Offline: []string{"m2"}}, refuse: []string{"quorum-lost"}},
		{name: "refuse-survivor-lagging", c: cluster{masters: 3, workers: 0, leader: 2, lagging: map[int]uint64{1: 50000}},
			target: Target{Remove: []string{"m2", "m3"}}, refuse: []string{"survivor-lagging"}},
		{name: "refuse-leaving-unreachable", c: cluster{masters: 3, workers: 0, leader: 1, unreachable: map[string]bool{"m3": true}},
			target: Target{Remove: []string{"m3"}}, refuse: []string{"leaving-unreachable"}},
		{name: "refuse-ca-key-missing", c: cluster{masters: 3, workers: 1, leader: 1, noCAKey: true},
			target: Target{Remove: []string{"m3"}}, refuse: []string{"ca-key-missing"}},
		{name: "refuse-lb-empty", c: cluster{masters: 3, workers: 1, leader: 1, lbOnly: map[string][]int{"w1": {2, 3}}},
			target: Target{Remove: []string{"m2", "m3"}}, refuse: []string{"lb-empty"}},
		{name: "refuse-lb-no-apiserver", c: cluster{masters: 3, workers: 2, leader: 1, lbOther: map[string]bool{"w2": true}},
			target: Target{Remove: []string{"m3"}}, refuse: []string{"lb-no-apiserver"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := Build(tc.c.facts(t), tc.target, "test", observedAt)
			var codes []string
			for _, r := range p.Refusals {
				codes = append(codes, r.Code)
			}
			if strings.Join(codes, ",") != strings.Join(tc.refuse, ",") {
				t.Fatalf("refusals = %v, want %v\n%v", codes, tc.refuse, p.Refusals)
			}
			if len(tc.refuse) > 0 && len(p.Steps) != 0 {
				t.Errorf("a refused plan has %d steps, want none", len(p.Steps))
			}
			checkOrder(t, p)
			var text bytes.Buffer
			if err := Render(&text, p); err != nil {
				t.Fatal(err)
			}
			p.Facts = Facts{} // the facts are the fixture: keep the golden JSON to the plan itself
			js, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", tc.name, "plan.txt"), text.String())
			golden.Check(t, filepath.Join("testdata", tc.name, "plan.json"), string(js)+"\n")
		})
	}
}

// The safe order of ARCHITECTURE.md, checked on the seed 003 shrink independently of the
// goldens: a reordering that a careless -update would bless still fails here.
func TestSafeOrder(t *testing.T) {
	p := Build(seed003.facts(t), Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	if len(p.Refusals) > 0 {
		t.Fatalf("refused: %v", p.Refusals)
	}
	pos := map[string]int{}
	for i, s := range p.Steps {
		if _, seen := pos[s.Kind]; !seen {
			pos[s.Kind] = i
		}
	}
	order := []string{KindPreflight, KindSnapshot, KindAPIServerRewrite, KindLBUpdate, KindRetire, KindMoveLeader, KindRemoveMember, KindInitialCluster, KindCertResign, KindVerify}
	for i := 1; i < len(order); i++ {
		a, okA := pos[order[i-1]]
		b, okB := pos[order[i]]
		if !okA || !okB {
			t.Fatalf("plan lacks %s or %s: %v", order[i-1], order[i], p.Steps)
		}
		if a >= b {
			t.Errorf("%s (step %d) must come before %s (step %d)", order[i-1], a+1, order[i], b+1)
		}
	}
	if p.PointOfNoReturn != "etcd/remove-member/m2" {
		t.Errorf("point of no return = %q, want the first member removal", p.PointOfNoReturn)
	}
	for _, s := range p.Steps {
		if s.Kind == KindRemoveMember && s.Quorum.HealthyAfter < s.Quorum.QuorumAfter {
			t.Errorf("%s leaves %d healthy members for a quorum of %d", s.ID, s.Quorum.HealthyAfter, s.Quorum.QuorumAfter)
		}
	}
	// Only the survivor m1 gets its apiserver and etcd units rewritten.
	for _, s := range p.Steps {
		if (s.Kind == KindAPIServerRewrite || s.Kind == KindInitialCluster) && s.Host != "m1" {
			t.Errorf("%s rewrites a unit on leaving host %s", s.ID, s.Host)
		}
	}
}

func TestFingerprintIgnoresLeaderAndIndexesButNotMembership(t *testing.T) {
	target := Target{Remove: []string{"m3"}}
	base := Build(seed003.facts(t), target, "test", observedAt)

	moved := seed003
	moved.leader = 1
	f := moved.facts(t)
	for i := range f.Etcd.Members {
		f.Etcd.Members[i].RaftIndex += 500
		f.Etcd.Members[i].RaftAppliedIndex += 500
	}
	if got := Build(f, target, "test", observedAt).Fingerprint; got != base.Fingerprint {
		t.Errorf("fingerprint changed with only the leader and raft indexes moving")
	}

	f = seed003.facts(t)
	f.Etcd.Members = f.Etcd.Members[:2] // m3's member removed by hand
	if got := Build(f, target, "test", observedAt).Fingerprint; got == base.Fingerprint {
		t.Errorf("fingerprint unchanged after a member was removed")
	}

	f = seed003.facts(t)
	cfg := f.LB["w1"]
	for p, text := range cfg.Files {
		cfg.Files[p] = strings.Replace(text, "fail_timeout=30s", "fail_timeout=10s", 1)
	}
	if got := Build(f, target, "test", observedAt).Fingerprint; got == base.Fingerprint {
		t.Errorf("fingerprint unchanged after a proxy config was edited")
	}
}

func TestEncodeDecode(t *testing.T) {
	p := Build(seed003.facts(t), Target{Remove: []string{"m2", "m3"}}, "v1", observedAt)
	data, err := Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data, "v1")
	if err != nil {
		t.Fatalf("decode own plan: %v", err)
	}
	if got.Fingerprint != p.Fingerprint || len(got.Steps) != len(p.Steps) {
		t.Errorf("round trip lost data")
	}
	tampered := bytes.Replace(data, []byte(`"risk": "irreversible"`), []byte(`"risk": "safe"`), 1)
	if _, err := Decode(tampered, "v1"); !errors.Is(err, ErrTampered) {
		t.Errorf("tampered plan: err = %v, want ErrTampered", err)
	}
	if _, err := Decode(data, "v2"); !errors.Is(err, ErrToolVersion) {
		t.Errorf("other tool version: err = %v, want ErrToolVersion", err)
	}
	if _, err := Decode([]byte("garbage"), ""); err == nil {
		t.Errorf("garbage decoded")
	}
}

// checkOrder: every step a kind requires (plan/kinds.go) comes before the steps that need
// it. Prerequisites looks only behind a step, so a planner putting one after would go
// unnoticed by apply's selection check.
func checkOrder(t *testing.T, p *Plan) {
	t.Helper()
	for i, st := range p.Steps {
		k, _ := Kind(st.Kind)
		for _, later := range p.Steps[i+1:] {
			for _, r := range k.Requires {
				if later.Kind == r.Kind && (r.Scope == AnyHost || (later.Host != "" && later.Host == st.Host)) {
					t.Errorf("step %s needs %s (%s), which the plan puts after it", st.ID, later.ID, r.Why)
				}
			}
		}
	}
}
