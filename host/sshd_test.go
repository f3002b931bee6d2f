package host

import (
	"context"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host/sshdtest"
	"github.com/mastershrink/mastershrink/inventory"
)

// sshd is a real OpenSSH server on 127.0.0.1, started for one test.
type sshd struct{ *sshdtest.Server }

func startSSHD(t *testing.T, extra string) *sshd { return &sshd{sshdtest.Start(t, extra)} }

func (s *sshd) config(name string) SSHConfig {
	return SSHConfig{Name: name, Address: "127.0.0.1", SSH: inventory.SSH{
		User: "root", Port: s.Port, IdentityFile: s.ClientKey, KnownHosts: s.KnownHosts,
		ConnectTimeout: inventory.Duration(5 * time.Second),
	}}
}

func (s *sshd) dial(t *testing.T) Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	h, err := Dial(ctx, s.config("m1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
