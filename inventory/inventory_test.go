package inventory

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestMain gives the tests a home with a ~/.ssh/known_hosts: an inventory that does not name
// one uses it, and Load refuses when it is missing.
func TestMain(m *testing.M) {
	home, err := os.MkdirTemp("", "inventory-test-home-")
	if err == nil {
		err = os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), nil, 0o600)
	}
	if err != nil {
		panic(err)
	}
	os.Setenv("HOME", home)
	code := m.Run()
	os.RemoveAll(home)
	os.Exit(code)
}

func TestLoadSeed003(t *testing.T) {
	inv, err := Load("testdata/seed003.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("testdata")
	if inv.File != filepath.Join(dir, "seed003.yaml") {
		t.Errorf("File = %q", inv.File)
	}
	if inv.Kubeconfig != filepath.Join(dir, "admin.kubeconfig") {
		t.Errorf("Kubeconfig = %q, want it relative to the inventory folder", inv.Kubeconfig)
	}
	if got := inv.HostNames(); strings.Join(got, ",") != "master-1,master-2,master-3,worker-1" {
		t.Errorf("HostNames = %v", got)
	}

	m1, ok := inv.Host("master-1")
	if !ok {
		t.Fatal("Host(master-1) not found")
	}
	if m1.Line != 14 {
		t.Errorf("master-1 Line = %d, want 14", m1.Line)
	}
	wantSSH := SSH{User: "ops", Port: 22, IdentityFile: filepath.Join(dir, "keys/id_ed25519"),
		KnownHosts: filepath.Join(dir, "known_hosts"), ConnectTimeout: Duration(5 * time.Second)}
	if m1.SSH != wantSSH {
		t.Errorf("master-1 SSH = %+v\nwant %+v", m1.SSH, wantSSH)
	}
	wantPaths := layouts["seed003"]
	wantPaths.PKIDir = "/etc/kubernetes/pki"
	wantPaths.CACert = "/etc/kubernetes/pki/ca.pem"
	wantPaths.CAKey = "/etc/kubernetes/pki/ca-key.pem"
	wantPaths.EtcdCACert = "/etc/kubernetes/pki/ca.pem"
	wantPaths.EtcdCert = "/etc/kubernetes/pki/etcd.pem"
	wantPaths.EtcdKey = "/etc/kubernetes/pki/etcd-key.pem"
	if m1.Paths != wantPaths {
		t.Errorf("master-1 Paths = %+v\nwant %+v", m1.Paths, wantPaths)
	}
	if m1.Paths.EtcdUnit != "kube-etcd" || m1.Paths.NginxConfig != "/approot/data/k8s/kube-nginx/kube-nginx.conf" || m1.Paths.CSRDir != "/opt/k8s/work" || m1.Paths.CAConfig != "/opt/k8s/work/ca-config.json" {
		t.Errorf("master-1 seed003 preset not applied: %+v", m1.Paths)
	}

	m2, _ := inv.Host("master-2")
	if m2.SSH.Port != 2222 || m2.SSH.User != "ops" || m2.SSH.JumpHost != "admin@bastion.example.com:22" || m2.SSH.ConnectTimeout.Std() != 5*time.Second {
		t.Errorf("master-2 SSH = %+v: host override over cluster-wide values", m2.SSH)
	}

	m3, _ := inv.Host("master-3")
	if m3.Paths.EtcdUnit != "etcd" || m3.Paths.CAKey != "/root/ca/ca-key.pem" || m3.Paths.NginxListen != "0.0.0.0:8443" {
		t.Errorf("master-3 Paths = %+v: host overrides not applied", m3.Paths)
	}
	if m3.Paths.PKIDir != "/etc/kubernetes/pki" || m3.Paths.APIServerUnit != "kube-apiserver" {
		t.Errorf("master-3 Paths = %+v: cluster-wide and preset values lost", m3.Paths)
	}

	w1, _ := inv.Host("worker-1")
	if !w1.SSH.Local || w1.SSH.User != "root" || w1.SSH.Port != 22 {
		t.Errorf("worker-1 SSH = %+v", w1.SSH)
	}
	if w1.Has(RoleMaster) || !w1.Has(RoleWorker) {
		t.Errorf("worker-1 roles = %v", w1.Roles)
	}
	if got := names(inv.HostsWithRole(RoleEtcd)); got != "master-1,master-2,master-3" {
		t.Errorf("HostsWithRole(etcd) = %s", got)
	}
	if got := names(inv.HostsWithRole(RoleWorker)); got != "master-1,master-2,master-3,worker-1" {
		t.Errorf("HostsWithRole(worker) = %s", got)
	}
	if _, ok := inv.Host("nope"); ok {
		t.Error("Host(nope) found")
	}
	// The top-level sections keep what was written, for messages and re-encoding.
	if inv.Paths.PKIDir != "/etc/kubernetes/pki" || inv.Paths.EtcdUnit != "" || inv.SSH.Port != 0 {
		t.Errorf("top-level overrides rewritten: paths %+v ssh %+v", inv.Paths, inv.SSH)
	}
}

func TestLoadKubeasz(t *testing.T) {
	inv, err := Load("testdata/kubeasz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	home, _ := os.UserHomeDir()
	m1, _ := inv.Host("m1")
	want := Paths{
		EtcdUnit: "etcd", APIServerUnit: "kube-apiserver", ControllerManagerUnit: "kube-controller-manager",
		SchedulerUnit: "kube-scheduler", NginxUnit: "kube-lb", KubeletUnit: "kubelet", KubeProxyUnit: "kube-proxy",
		NginxBinary: "/etc/kube-lb/sbin/kube-lb", NginxPrefix: "/etc/kube-lb", NginxConfig: "/etc/kube-lb/conf/kube-lb.conf",
		NginxListen: "127.0.0.1:6443",
		PKIDir:      "/etc/kubernetes/ssl", CACert: "/etc/kubernetes/ssl/ca.pem", CAKey: "/etc/kubernetes/ssl/ca-key.pem",
		CAConfig: "/etc/kubernetes/ssl/ca-config.json", CSRDir: "/etc/kubernetes/ssl",
		EtcdCACert: "/etc/kubernetes/ssl/ca.pem", EtcdCert: "/etc/kubernetes/ssl/etcd.pem", EtcdKey: "/etc/kubernetes/ssl/etcd-key.pem",
		APIServerPort: 6443, EtcdClientPort: 2379, EtcdPeerPort: 2380,
	}
	if m1.Paths != want {
		t.Errorf("m1 Paths = %+v\nwant %+v", m1.Paths, want)
	}
	wantSSH := SSH{User: "root", Port: 22, KnownHosts: filepath.Join(home, ".ssh/known_hosts"), ConnectTimeout: Duration(10 * time.Second)}
	if m1.SSH != wantSSH {
		t.Errorf("m1 SSH = %+v, want defaults %+v", m1.SSH, wantSSH)
	}
	n1, _ := inv.Host("n1")
	if n1.Paths.NginxListen != "127.0.0.1:7443" || n1.Paths.APIServerPort != 7443 || n1.Paths.NginxUnit != "kube-lb" {
		t.Errorf("n1 Paths = %+v", n1.Paths)
	}
	if n1.Line != 9 {
		t.Errorf("n1 Line = %d, want 9", n1.Line)
	}
}

func TestLayoutIsAbsolute(t *testing.T) {
	for _, name := range Layouts() {
		p, ok := Layout(name)
		if !ok {
			t.Fatalf("Layout(%q) missing", name)
		}
		// Every preset says where the CA and etcd's client material are.
		for _, f := range []string{p.CACert, p.CAKey, p.EtcdCACert, p.EtcdCert, p.EtcdKey, p.PKIDir} {
			if !filepath.IsAbs(f) {
				t.Errorf("%s: %q is not absolute", name, f)
			}
		}
		// The rest may be unset (no node proxy, no ca-config.json on the hosts), else absolute.
		for _, f := range []string{p.CAConfig, p.CSRDir, p.NginxConfig} {
			if f != "" && !filepath.IsAbs(f) {
				t.Errorf("%s: %q is not absolute", name, f)
			}
		}
		// A host with no overrides gets exactly the preset, named for it.
		inv := mustParse(t, "format_version: 1\ncluster: t\nkubeconfig: /dev/null\nlayout: "+name+"\nhosts:\n- {name: a, address: 10.0.0.1, roles: [etcd]}\n")
		if inv.Hosts[0].Paths != p.ForHost("a") {
			t.Errorf("%s: host Paths %+v\nwant Layout() %+v", name, inv.Hosts[0].Paths, p)
		}
	}
	if _, ok := Layout("kubeadm"); ok {
		t.Error("Layout(kubeadm) found")
	}
}

func names(hs []*Host) string {
	var s []string
	for _, h := range hs {
		s = append(s, h.Name)
	}
	return strings.Join(s, ",")
}

func mustParse(t *testing.T, src string) *Inventory {
	t.Helper()
	inv, err := parse("inventory.yaml", []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return inv
}

// problems are the lines of Load's *ValidationError, as the user reads them; any other error
// fails the test.
func problems(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Load = %v, want *ValidationError", err)
	}
	var got []string
	for _, p := range ve.Problems {
		got = append(got, p.String())
	}
	return got
}

const goodHead = "format_version: 1\ncluster: t\nlayout: seed003\nkubeconfig: admin.kubeconfig\nhosts:\n"

// tail completes a case that writes its own head, after its last line so the lines it
// expects stay where they are.
const tail = "cluster: t\nkubeconfig: admin.kubeconfig\n"

func TestLoadBad(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // every problem, in order, exactly
	}{
		{"malformed YAML", goodHead + "  - name: m1\n    address 10.0.0.1\n    roles: [etcd]\n",
			[]string{"inventory.yaml:7: invalid YAML: could not find expected ':' (fix the YAML at this line or the one before: indent with spaces, not tabs; close every bracket and quote)"}},
		{"tab indentation", "format_version: 1\n\tlayout: seed003\n",
			[]string{"inventory.yaml:2: invalid YAML: found a tab character that violates indentation (fix the YAML at this line or the one before: indent with spaces, not tabs; close every bracket and quote)"}},
		{"role typo", goodHead + "  - name: m1\n    address: 10.0.0.1\n    roles: [etcd]\n  - name: m2\n    address: 10.0.0.2\n    roles: [etcd]\n  - name: m3\n    address: 10.0.0.3\n    roles:\n      - mastr\n",
			[]string{`inventory.yaml:15: hosts[2].roles[0]: unknown role "mastr" (want etcd, master, worker or lb)`}},
		{"duplicate name", goodHead + "  - {name: m1, address: 10.0.0.1, roles: [etcd]}\n  - {name: m1, address: 10.0.0.2, roles: [etcd]}\n",
			[]string{`inventory.yaml:7: hosts[1].name: duplicate host name "m1" (first at line 6): give each host its own name`}},
		{"duplicate address", goodHead + "  - {name: m1, address: 10.0.0.1, roles: [etcd]}\n  - {name: m2, address: 10.0.0.1, roles: [etcd]}\n",
			[]string{`inventory.yaml:7: hosts[1].address: address 10.0.0.1 already used by another host (line 6): give each host its own address`}},
		{"duplicate IPv6 address written differently", goodHead + "  - {name: m1, address: 'fd00::1', roles: [etcd]}\n  - {name: m2, address: 'fd00:0::1', roles: [etcd]}\n",
			[]string{`inventory.yaml:7: hosts[1].address: address fd00:0::1 already used by another host (line 6): give each host its own address`}},
		{"bad IPv4", goodHead + "  - {name: m1, address: 10.0.0.300, roles: [etcd]}\n",
			[]string{`inventory.yaml:6: hosts[0].address: invalid IPv4 address "10.0.0.300" (want four numbers from 0 to 255, e.g. 10.88.0.11)`}},
		{"address with a port", goodHead + "  - {name: m1, address: '10.0.0.1:22', roles: [etcd]}\n",
			[]string{`inventory.yaml:6: hosts[0].address: invalid address "10.0.0.1:22": not an IPv6 address (and a port goes in ssh.port)`}},
		{"bad DNS name", goodHead + "  - {name: m1, address: 'bad_host.example', roles: [etcd]}\n",
			[]string{`inventory.yaml:6: hosts[0].address: invalid address "bad_host.example": want an IPv4 or IPv6 address or a DNS name`}},
		{"unknown field", goodHead + "  - name: m1\n    adress: 10.0.0.1\n    roles: [etcd]\n",
			[]string{`inventory.yaml:7: hosts[0].adress: unknown field "adress" (did you mean "address"?)`}},
		{"unknown top-level field", "format_version: 1\nlayout: seed003\nhost:\n  - {name: m1, address: 10.0.0.1, roles: [etcd]}\n" + tail,
			[]string{`inventory.yaml:3: host: unknown field "host" (did you mean "hosts"?)`}},
		{"misspelt hosts after other keys", "format_version: 1\nlayout: seed003\nssh:\n  user: root\nhostz:\n  - {name: m1, address: 10.0.0.1, roles: [etcd]}\n" + tail,
			[]string{`inventory.yaml:5: hostz: unknown field "hostz" (did you mean "hosts"?)`}},
		// A key like no field is no typo of hosts: both problems stand.
		{"unknown top-level field unlike any", "format_version: 1\nlayout: seed003\nmachines:\n  - {name: m1, address: 10.0.0.1, roles: [etcd]}\n" + tail,
			[]string{
				`inventory.yaml:1: hosts: no hosts (want at least one)`,
				`inventory.yaml:3: machines: unknown field "machines"`,
			}},
		// The typo and the real key both written: the real one is still checked.
		{"typo beside the real key", goodHead + "  - {name: m1, address: 10.0.0.300, adress: 10.0.0.1, roles: [etcd]}\n",
			[]string{
				`inventory.yaml:6: hosts[0].adress: unknown field "adress" (did you mean "address"?)`,
				`inventory.yaml:6: hosts[0].address: invalid IPv4 address "10.0.0.300" (want four numbers from 0 to 255, e.g. 10.88.0.11)`,
			}},
		{"bad duration", "format_version: 1\nlayout: seed003\nssh:\n  connect_timeout: 10\nhosts:\n  - {name: m1, address: 10.0.0.1, roles: [etcd], ssh: {connect_timeout: 3 seconds}}\n" + tail,
			[]string{
				`inventory.yaml:4: ssh.connect_timeout: invalid duration "10" (want e.g. 10s or 1m30s)`,
				`inventory.yaml:6: hosts[0].ssh.connect_timeout: invalid duration "3 seconds" (want e.g. 10s or 1m30s)`,
			}},
		{"port out of range and not a number", goodHead + "  - name: m1\n    address: 10.0.0.1\n    roles: [etcd]\n    ssh: {port: 70000}\n    paths: {etcd_client_port: two}\n",
			[]string{
				`inventory.yaml:9: hosts[0].ssh.port: port 70000 out of range (1-65535)`,
				`inventory.yaml:10: hosts[0].paths.etcd_client_port: want an integer, got "two"`,
			}},
		{"no roles", goodHead + "  - {name: m1, address: 10.0.0.1}\n  - {name: m2, address: 10.0.0.2, roles: []}\n",
			[]string{
				`inventory.yaml:6: hosts[0].roles: no roles (want at least one of etcd, master, worker or lb)`,
				`inventory.yaml:7: hosts[1].roles: no roles (want at least one of etcd, master, worker or lb)`,
			}},
		{"unknown layout and version", "format_version: 2\nlayout: kubeadm\nhosts:\n  - {name: m1, address: 10.0.0.1, roles: [etcd]}\n" + tail,
			[]string{
				`inventory.yaml:1: format_version: unsupported format_version 2 (this mastershrink reads 1: use the mastershrink the file was written for, or write it as format_version: 1)`,
				`inventory.yaml:2: layout: unknown layout "kubeadm" (want envfile, hardway, kubeasz, kubespray or seed003)`,
			}},
		{"missing version and layout", "hosts:\n  - {name: m1, address: 10.0.0.1, roles: [etcd]}\n",
			[]string{
				`inventory.yaml:1: format_version: missing (want 1)`,
				`inventory.yaml:1: cluster: missing (want the cluster's name, e.g. cluster: prod-sh; plans and locks carry it)`,
				`inventory.yaml:1: layout: missing (want envfile, hardway, kubeasz, kubespray or seed003)`,
				`inventory.yaml:1: kubeconfig: missing (want the admin kubeconfig on this machine, e.g. kubeconfig: admin.kubeconfig, relative to the inventory's folder)`,
			}},
		{"bad jump host and listen", goodHead + "  - name: m1\n    address: 10.0.0.1\n    roles: [etcd]\n    ssh: {jump_host: 'ops@bastion:ssh'}\n    paths: {nginx_listen: '127.0.0.1', nginx_config: 'kube-nginx.conf'}\n",
			[]string{
				`inventory.yaml:9: hosts[0].ssh.jump_host: invalid jump host "ops@bastion:ssh" (want [user@]host[:port])`,
				`inventory.yaml:10: hosts[0].paths.nginx_config: want an absolute path, got "kube-nginx.conf"`,
				`inventory.yaml:10: hosts[0].paths.nginx_listen: invalid listen address "127.0.0.1" (want HOST:PORT, e.g. 127.0.0.1:8443)`,
			}},
		{"roles not a list", goodHead + "  - {name: m1, address: 10.0.0.1, roles: master}\n",
			[]string{`inventory.yaml:6: hosts[0].roles: want a list, got "master"`}},
		{"field defined twice", goodHead + "  - name: m1\n    address: 10.0.0.1\n    address: 10.0.0.2\n    roles: [etcd]\n",
			[]string{`inventory.yaml:8: hosts[0].address: defined twice (first at line 7)`}},
		{"empty file", "# nothing\n", []string{`inventory.yaml:1: the file is empty (want format_version, layout and hosts)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "inventory.yaml")
			if err := os.WriteFile(file, []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "admin.kubeconfig"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			// Load from inside the folder so the message names the file as the user typed it.
			t.Chdir(dir)
			_, err := Load("inventory.yaml")
			got := problems(t, err)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err.Error() != strings.Join(tt.want, "\n") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !errors.Is(err, ErrNotFound) || !strings.HasSuffix(err.Error(), "nope.yaml does not exist: give the cluster's inventory file with -i") {
		t.Errorf("Load(missing) = %v, want a not-exist error naming the file", err)
	}
}

func TestDurationYAML(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 1m30s\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.D.Std() != 90*time.Second {
		t.Errorf("D = %v", v.D)
	}
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "d: 1m30s\n" {
		t.Errorf("Marshal = %q", out)
	}
	if err := yaml.Unmarshal([]byte("d: soon\n"), &v); err == nil || !strings.Contains(err.Error(), `invalid duration "soon"`) {
		t.Errorf("Unmarshal(soon) = %v", err)
	}
}

func TestParseJumpHost(t *testing.T) {
	tests := []struct {
		in         string
		user, host string
		port       int
		bad        bool
	}{
		{"bastion", "", "bastion", 22, false},
		{"ops@10.0.0.1:2222", "ops", "10.0.0.1", 2222, false},
		{"[fd00::1]:2200", "", "fd00::1", 2200, false},
		{"fd00::1", "", "fd00::1", 22, false},
		{"@bastion", "", "", 0, true},
		{"bastion:99999", "", "", 0, true},
	}
	for _, tt := range tests {
		u, h, p, err := ParseJumpHost(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseJumpHost(%q) accepted", tt.in)
			}
			continue
		}
		if err != nil || u != tt.user || h != tt.host || p != tt.port {
			t.Errorf("ParseJumpHost(%q) = %q %q %d %v", tt.in, u, h, p, err)
		}
	}
}

// Every file the inventory names on this machine is checked when it loads, at the line that
// names it, with the path as resolved and the fix.
func TestLoadReferencedFiles(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	write := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	load := func(src string) []string {
		t.Helper()
		write("inventory.yaml", src)
		_, err := Load("inventory.yaml")
		if err == nil {
			return nil
		}
		return problems(t, err)
	}
	check := func(name string, got, want []string) {
		t.Helper()
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: problems:\n%s\nwant:\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	p := func(f string) string { return filepath.Join(dir, f) }

	const head = "format_version: 1\ncluster: t\nlayout: seed003\nkubeconfig: admin.kubeconfig\n"
	src := head + "ssh:\n  identity_file: keys/id\n  known_hosts: kh\n  port: 2222\nhosts:\n" +
		"  - {name: m1, address: 10.0.0.1, roles: [etcd, master]}\n" +
		"  - {name: m2, address: 10.0.0.2, roles: [etcd, master]}\n"
	check("nothing there", load(src), []string{
		"inventory.yaml:4: kubeconfig: " + p("admin.kubeconfig") + " does not exist: fix kubeconfig: in the inventory (relative paths start at the inventory's folder), or copy the cluster's admin kubeconfig there",
		"inventory.yaml:6: ssh.identity_file: " + p("keys/id") + " does not exist: fix the path (relative paths start at the inventory's folder), or drop identity_file to use the keys in ssh-agent",
		"inventory.yaml:7: ssh.known_hosts: " + p("kh") + " does not exist: fix the path, or create it with the hosts' keys: ssh-keyscan -p 2222 10.0.0.1 10.0.0.2 >> " + p("kh") + ", and check the fingerprints",
	})

	write("admin.kubeconfig", "")
	write("kh", "")
	if err := os.Mkdir(p("keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	write("keys/id", "")
	check("all there", load(src), nil)

	// A folder where a file belongs.
	check("folder", load(strings.Replace(src, "keys/id", "keys", 1)), []string{
		"inventory.yaml:6: ssh.identity_file: " + p("keys") + " is a folder, want a file: fix the path (relative paths start at the inventory's folder), or drop identity_file to use the keys in ssh-agent",
	})

	// A host's own value is checked at the host's line; the cluster-wide value, which no
	// host uses any more, is not; a local host needs no SSH files at all.
	src = head + "ssh:\n  identity_file: gone\nhosts:\n" +
		"  - name: m1\n    address: 10.0.0.1\n    roles: [etcd]\n    ssh: {identity_file: keys/id, known_hosts: /nonexistent/kh}\n" +
		"  - name: m2\n    address: 10.0.0.2\n    roles: [etcd]\n    ssh: {identity_file: keys/id2, local: true}\n"
	check("host overrides", load(src), []string{
		"inventory.yaml:11: hosts[0].ssh.known_hosts: /nonexistent/kh does not exist: fix the path, or create it with the hosts' keys: ssh-keyscan 10.0.0.1 >> /nonexistent/kh, and check the fingerprints",
	})
	// The same cluster-wide value is checked once some host uses it.
	check("cluster-wide value used", load(strings.Replace(src, "{identity_file: keys/id, ", "{", 1)), []string{
		"inventory.yaml:6: ssh.identity_file: " + p("gone") + " does not exist: fix the path (relative paths start at the inventory's folder), or drop identity_file to use the keys in ssh-agent",
		"inventory.yaml:11: hosts[0].ssh.known_hosts: /nonexistent/kh does not exist: fix the path, or create it with the hosts' keys: ssh-keyscan 10.0.0.1 >> /nonexistent/kh, and check the fingerprints",
	})

	// Hosts on different ports: the command cannot be written for them all.
	src = head + "ssh:\n  known_hosts: kh2\nhosts:\n" +
		"  - {name: m1, address: 10.0.0.1, roles: [etcd], ssh: {port: 2201}}\n" +
		"  - {name: m2, address: 10.0.0.2, roles: [etcd]}\n"
	check("ports differ", load(src), []string{
		"inventory.yaml:6: ssh.known_hosts: " + p("kh2") + " does not exist: fix the path, or create it with the hosts' keys: ssh-keyscan -p PORT ADDRESS >> " + p("kh2") + ", and check the fingerprints",
	})

	// The checks of the file and of the fields come together, in file order.
	src = "format_version: 1\ncluster: 'prod/sh'\nlayout: seed003\nkubeconfig: missing.kubeconfig\nhosts:\n  - {name: m1, address: 10.0.0.300, roles: [etcd]}\n"
	check("with other problems", load(src), []string{
		`inventory.yaml:2: cluster: invalid cluster name "prod/sh" (letters, digits, '.', '_' and '-')`,
		"inventory.yaml:4: kubeconfig: " + p("missing.kubeconfig") + " does not exist: fix kubeconfig: in the inventory (relative paths start at the inventory's folder), or copy the cluster's admin kubeconfig there",
		`inventory.yaml:6: hosts[0].address: invalid IPv4 address "10.0.0.300" (want four numbers from 0 to 255, e.g. 10.88.0.11)`,
	})

	if os.Geteuid() != 0 { // root reads any file
		write("locked", "")
		if err := os.Chmod(p("locked"), 0); err != nil {
			t.Fatal(err)
		}
		check("unreadable", load(head+"hosts:\n  - {name: m1, address: 10.0.0.1, roles: [etcd], ssh: {identity_file: locked}}\n"), []string{
			"inventory.yaml:6: hosts[0].ssh.identity_file: " + p("locked") + " cannot be read (permission denied): give this user read access, or point to a copy it can read",
		})
	}
}

// The default known_hosts is checked when a host goes over SSH without naming its own.
func TestLoadDefaultKnownHosts(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("admin.kubeconfig", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	src := "format_version: 1\ncluster: t\nlayout: seed003\nkubeconfig: admin.kubeconfig\nssh:\n  port: 2222\nhosts:\n" +
		"  - {name: m1, address: 10.0.0.1, roles: [etcd]}\n  - {name: w1, address: 10.0.0.2, roles: [worker], ssh: {local: true}}\n"
	if err := os.WriteFile("inventory.yaml", []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load("inventory.yaml")
	kh := filepath.Join(home, ".ssh", "known_hosts")
	want := "inventory.yaml:6: ssh.known_hosts: not set, and the default " + kh + " does not exist: set ssh.known_hosts, or create it with the hosts' keys: ssh-keyscan -p 2222 10.0.0.1 >> " + kh + ", and check the fingerprints"
	if err == nil || err.Error() != want {
		t.Errorf("Load = %v\nwant %s", err, want)
	}
	// Every host local: no SSH, no known_hosts needed.
	if err := os.WriteFile("inventory.yaml", []byte(strings.Replace(src, "roles: [etcd]}", "roles: [etcd], ssh: {local: true}}", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load("inventory.yaml"); err != nil {
		t.Errorf("all local: %v", err)
	}
	// Created where the message says: loads.
	if err := os.MkdirAll(filepath.Dir(kh), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kh, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("inventory.yaml", []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load("inventory.yaml"); err != nil {
		t.Errorf("with the default known_hosts: %v", err)
	}
}

// Bounded parsing: an alias bomb and an oversized file are refused with a message, never
// expanded or read whole.
func TestLoadBounded(t *testing.T) {
	dir := t.TempDir()
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for _, name := range []string{"b", "c", "d", "e", "f", "g", "h", "i", "j"} {
		bomb += name + ": &" + name + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n"
		prev = name
	}
	// The bomb goes where the decoder walks: a field it reads.
	bomb = "format_version: 1\ncluster: t\nkubeconfig: k\nx-anchors:\n" + strings.ReplaceAll(strings.TrimSpace("  "+strings.ReplaceAll(bomb, "\n", "\n  ")), "\n  ", "\n  ") + "\nhosts: *j\n"
	p := filepath.Join(dir, "bomb.yaml")
	os.WriteFile(p, []byte(bomb), 0o600)
	if _, err := Load(p); err == nil {
		t.Error("alias bomb loaded")
	}
	big := filepath.Join(dir, "big.yaml")
	os.WriteFile(big, bytes.Repeat([]byte("# padding\n"), MaxInventoryBytes/10+1), 0o600)
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
}
