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
