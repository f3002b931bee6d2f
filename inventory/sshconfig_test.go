package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSSHConfigFor(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	cfg := filepath.Join(home, "config")
	os.WriteFile(cfg, []byte(`
Host m1
    User ops
    Port 2222
    IdentityFile ~/.ssh/id_m1
    ProxyJump jump@bastion:2200

Host 10.0.0.*
    User admin
    IdentityFile %d/.ssh/id_%h

Host deep
    ProxyJump a,b

Host badport
    Port ssh

Host *
    Port 22022
`), 0o600)
	c, err := LoadSSHConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.For("m1", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	// The name's own block wins over the address's, as `ssh m1` reads it.
	if s.User != "ops" || s.Port != 2222 || s.IdentityFile != filepath.Join(home, ".ssh/id_m1") || s.JumpHost != "jump@bastion:2200" {
		t.Errorf("m1: %+v", s)
	}
	// A host the config knows by address only: found by address, tokens expanded; Port from
	// Host *, the first value OpenSSH would take.
	s, err = c.For("w1", "10.0.0.9")
	if err != nil {
		t.Fatal(err)
	}
	if s.User != "admin" || s.IdentityFile != filepath.Join(home, ".ssh/id_10.0.0.9") || s.Port != 22022 || s.JumpHost != "" {
		t.Errorf("w1: %+v", s)
	}
	if _, err := c.For("deep", "192.0.2.1"); err == nil || !strings.Contains(err.Error(), "several hops") {
		t.Errorf("two-hop ProxyJump: %v", err)
	}
	if _, err := c.For("badport", "192.0.2.1"); err == nil || !strings.Contains(err.Error(), `Port "ssh"`) {
		t.Errorf("bad port: %v", err)
	}
	// No file is no configuration, not an error.
	none, err := LoadSSHConfig(filepath.Join(home, "missing"))
	if err != nil || none != nil {
		t.Errorf("missing file: %v, %v", none, err)
	}
	if s, err := none.For("m1", "10.0.0.1"); err != nil || s != (SSH{}) {
		t.Errorf("nil config gives %+v, %v", s, err)
	}
}

// The operator's ~/.ssh/config is laid between the defaults and the inventory: what the
// inventory does not say comes from it, what the inventory says wins.
func TestLoadUsesSSHConfig(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte("Host m1\n    User ops\n    Port 2200\n    ProxyJump jump@bastion:2201\nHost w1\n    User ops\n"), 0o600)
	os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), nil, 0o600)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "admin.kubeconfig"), nil, 0o600)
	src := "format_version: 1\ncluster: t\nlayout: seed003\nkubeconfig: admin.kubeconfig\nhosts:\n" +
		"  - {name: m1, address: 10.0.0.1, roles: [etcd, master]}\n  - {name: w1, address: 10.0.0.2, roles: [worker], ssh: {user: root}}\n"
	p := filepath.Join(dir, "inventory.yaml")
	os.WriteFile(p, []byte(src), 0o600)
	inv, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	m1, _ := inv.Host("m1")
	if m1.SSH.User != "ops" || m1.SSH.Port != 2200 || !strings.Contains(m1.SSH.JumpHost, "bastion") {
		t.Errorf("m1's SSH %+v, want ~/.ssh/config's user, port and jump host", m1.SSH)
	}
	if w1, _ := inv.Host("w1"); w1.SSH.User != "root" {
		t.Errorf("w1's user %q, want the inventory's root over ~/.ssh/config's ops", w1.SSH.User)
	}
}
