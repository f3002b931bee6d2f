package host

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/mastershrink/mastershrink/inventory"
)

// sshd is a real OpenSSH server on 127.0.0.1, started for one test.
type sshd struct {
	port       int
	addr       string
	hostKey    ssh.PublicKey
	dir        string
	clientKey  string // identity file accepted by the server
	knownHosts string // holds the server's key
}

func writeKey(t *testing.T, file string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startSSHD runs sshd on a free loopback port with a fresh host key, accepting a fresh
// client key for root. extra is appended to sshd_config.
func startSSHD(t *testing.T, extra string) *sshd {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("openssh-server is not installed (apt-get install openssh-server)")
	}
	// sshd refuses to start without its privilege separation folder, which only the
	// package's init script would create.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	s := &sshd{dir: t.TempDir(), port: freePort(t)}
	s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	s.hostKey = writeKey(t, filepath.Join(s.dir, "host_key"))
	s.clientKey = filepath.Join(s.dir, "id_ed25519")
	clientPub := writeKey(t, s.clientKey)
	if err := os.WriteFile(filepath.Join(s.dir, "authorized_keys"), ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatal(err)
	}
	s.knownHosts = filepath.Join(s.dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, s.hostKey) + "\n"
	if err := os.WriteFile(s.knownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s/host_key
PidFile %s/sshd.pid
AuthorizedKeysFile %s/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
StrictModes no
AllowTcpForwarding yes
%s
`, s.port, s.dir, s.dir, s.dir, extra)
	confFile := filepath.Join(s.dir, "sshd_config")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", confFile)
	logFile, err := os.Create(filepath.Join(s.dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logFile.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logFile.Name())
			t.Logf("sshd log:\n%s", log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("sshd did not listen on %s: %v\n%s", s.addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

func (s *sshd) config(name string) SSHConfig {
	return SSHConfig{Name: name, Address: "127.0.0.1", SSH: inventory.SSH{
		User: "root", Port: s.port, IdentityFile: s.clientKey, KnownHosts: s.knownHosts,
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

func marshalAuthorized(k ssh.PublicKey) []byte { return ssh.MarshalAuthorizedKey(k) }
