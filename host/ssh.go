package host

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/mastershrink/mastershrink/inventory"
)

// DialFunc makes a network connection. The lab's tests pass one that opens sockets inside
// a network namespace.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// SSHConfig says how to reach one host over SSH. Zero values take the inventory's defaults
// (user root, port 22, 10 s connection timeout, ~/.ssh/known_hosts).
type SSHConfig struct {
	Name    string
	Address string
	inventory.SSH
	// Dial makes the TCP connection to the host, or to the jump host when there is one;
	// nil uses a net.Dialer.
	Dial DialFunc
}

// keepaliveInterval is how often an idle connection is probed; three missed answers close it.
const keepaliveInterval = 15 * time.Second

type sshHost struct {
	name   string
	client *ssh.Client
	jump   *ssh.Client
	closer []io.Closer // agent connection
	now    func() time.Time
	// bridge is the remote command that speaks D-Bus on its stdin and stdout.
	bridge string
	stop   chan struct{}
	once   sync.Once
}

// bridgeCmd finds systemd-stdio-bridge where Debian 12 (/usr/bin), older Debian and
// RHEL (/lib/systemd, /usr/lib/systemd) put it; exit 127 says it is missing.
const bridgeCmd = `for b in systemd-stdio-bridge /usr/lib/systemd/systemd-stdio-bridge /lib/systemd/systemd-stdio-bridge; do ` +
	`if command -v "$b" >/dev/null 2>&1; then exec "$b"; fi; done; echo "systemd-stdio-bridge not found" >&2; exit 127`

// Dial connects to a host over SSH (through its jump host when it has one), verifying host
// keys against known_hosts. An unreachable host returns *UnreachableError, a refused login
// *AuthError, an unknown or changed host key *HostKeyError.
func Dial(ctx context.Context, cfg SSHConfig) (Host, error) {
	if cfg.User == "" {
		cfg.User = inventory.DefaultSSHUser
	}
	if cfg.Port == 0 {
		cfg.Port = inventory.DefaultSSHPort
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = inventory.Duration(inventory.DefaultConnectTimeout)
	}
	if cfg.KnownHosts == "" {
		cfg.KnownHosts = inventory.DefaultKnownHosts
	}
	cfg.KnownHosts = expandHome(cfg.KnownHosts)
	cfg.IdentityFile = expandHome(cfg.IdentityFile)
	if cfg.Name == "" {
		cfg.Name = cfg.Address
	}
	h := &sshHost{name: cfg.Name, now: time.Now, bridge: bridgeCmd, stop: make(chan struct{})}

	kh, err := loadKnownHosts(cfg.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	auth, closer, err := authMethods(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	if closer != nil {
		h.closer = append(h.closer, closer)
	}
	dial := cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	via := ""
	if cfg.JumpHost != "" {
		ju, jhost, jport, err := inventory.ParseJumpHost(cfg.JumpHost)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("%s: %w", cfg.Name, err)
		}
		if ju == "" {
			ju = cfg.User
		}
		h.jump, err = handshake(ctx, hop{name: cfg.Name + " (jump host " + jhost + ")", host: jhost, port: jport, user: ju}, dial, auth, kh, cfg.ConnectTimeout.Std())
		if err != nil {
			h.Close()
			return nil, err
		}
		dial = h.jump.DialContext
		via = cfg.JumpHost
	}
	h.client, err = handshake(ctx, hop{name: cfg.Name, host: cfg.Address, port: cfg.Port, user: cfg.User, via: via}, dial, auth, kh, cfg.ConnectTimeout.Std())
	if err != nil {
		h.Close()
		return nil, err
	}
	go h.keepalive()
	return h, nil
}

type hop struct {
	name, host string
	port       int
	user       string
	via        string
}

func handshake(ctx context.Context, hp hop, dial DialFunc, auth []ssh.AuthMethod, kh *knownHosts, timeout time.Duration) (*ssh.Client, error) {
	addr := net.JoinHostPort(hp.host, strconv.Itoa(hp.port))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, &UnreachableError{Host: hp.name, Address: addr, Via: hp.via, Err: err}
	}
	// The handshake itself takes no context: closing the connection is how it is bounded.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User:              hp.user,
		Auth:              auth,
		HostKeyCallback:   kh.callback(hp.name),
		HostKeyAlgorithms: kh.algorithms(addr),
		Timeout:           timeout,
	})
	if !stop() {
		if err == nil {
			cc.Close()
		}
		return nil, &UnreachableError{Host: hp.name, Address: addr, Via: hp.via, Err: fmt.Errorf("no SSH handshake: %w", ctx.Err())}
	}
	if err != nil {
		conn.Close()
		var hke *HostKeyError
		if errors.As(err, &hke) {
			return nil, hke
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, &AuthError{Host: hp.name, Address: addr, User: hp.user, Err: errors.Unwrap(err)}
		}
		return nil, fmt.Errorf("ssh handshake with %s (%s): %w", hp.name, addr, err)
	}
	return ssh.NewClient(cc, chans, reqs), nil
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

// authMethods offers the identity file when the inventory names one, else the agent, else
// the usual default key files.
func authMethods(cfg SSHConfig) ([]ssh.AuthMethod, io.Closer, error) {
	agentSigners, closer := agentAuth()
	if cfg.IdentityFile != "" {
		signer, err := loadKey(cfg.IdentityFile)
		if err != nil {
			var pe *ssh.PassphraseMissingError
			if errors.As(err, &pe) && agentSigners != nil {
				return []ssh.AuthMethod{ssh.PublicKeysCallback(agentSigners)}, closer, nil
			}
			if closer != nil {
				closer.Close()
			}
			if errors.As(err, &pe) {
				return nil, nil, fmt.Errorf("identity file %s is passphrase-protected: load it into ssh-agent (ssh-add %s) and set SSH_AUTH_SOCK", cfg.IdentityFile, cfg.IdentityFile)
			}
			return nil, nil, err
		}
		if closer != nil {
			closer.Close()
		}
		return []ssh.AuthMethod{ssh.PublicKeys(signer)}, nil, nil
	}
	if agentSigners != nil {
		return []ssh.AuthMethod{ssh.PublicKeysCallback(agentSigners)}, closer, nil
	}
	home, _ := os.UserHomeDir()
	var signers []ssh.Signer
	for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		if s, err := loadKey(filepath.Join(home, ".ssh", name)); err == nil {
			signers = append(signers, s)
		}
	}
	if len(signers) == 0 {
		return nil, nil, errors.New("no SSH credentials: set ssh.identity_file in the inventory, or start ssh-agent with the key loaded (SSH_AUTH_SOCK)")
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, nil, nil
}

func loadKey(file string) (ssh.Signer, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", file, err)
	}
	return s, nil
}

func agentAuth() (func() ([]ssh.Signer, error), io.Closer) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, nil
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, nil
	}
	return agent.NewClient(conn).Signers, conn
}

type knownHosts struct {
	file string
	cb   ssh.HostKeyCallback
}

// knownHostsCache holds the parsed known_hosts by file. Every connection keeps its host
// key callback for the re-keys to come, so a database parsed per Dial grew with the hosts
// squared: 1,000 hosts each holding its own copy of a 1,000-line known_hosts was most of a
// 640 MB plan. The file's identity, size and modification time tell when to parse it again
// (a key added by the operator or a test between two Dials).
var knownHostsCache = struct {
	sync.Mutex
	files map[string]cachedKnownHosts
}{files: map[string]cachedKnownHosts{}}

type cachedKnownHosts struct {
	info os.FileInfo
	kh   *knownHosts
}

func loadKnownHosts(file string) (*knownHosts, error) {
	knownHostsCache.Lock()
	defer knownHostsCache.Unlock()
	info, err := os.Stat(file)
	if err == nil {
		c, ok := knownHostsCache.files[file]
		if ok && os.SameFile(c.info, info) && c.info.Size() == info.Size() && c.info.ModTime().Equal(info.ModTime()) {
			return c.kh, nil
		}
	}
	kh, err := parseKnownHosts(file)
	if err != nil {
		delete(knownHostsCache.files, file)
		return nil, err
	}
	if info != nil {
		knownHostsCache.files[file] = cachedKnownHosts{info: info, kh: kh}
	}
	return kh, nil
}

func parseKnownHosts(file string) (*knownHosts, error) {
	cb, err := knownhosts.New(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("known_hosts file %s does not exist: create it with the hosts' keys (ssh-keyscan -p PORT ADDRESS >> %s) or set ssh.known_hosts in the inventory", file, file)
	}
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	return &knownHosts{file: file, cb: cb}, nil
}

// zeroTCPAddr stands in for a remote address that is not TCP (a tunnelled or custom
// connection): knownhosts only checks the host name then.
var zeroTCPAddr = &net.TCPAddr{IP: net.IPv4zero}

func (k *knownHosts) callback(name string) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		if _, ok := remote.(*net.TCPAddr); !ok {
			remote = zeroTCPAddr
		}
		err := k.cb(hostname, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			return &HostKeyError{Host: name, Address: hostname, KnownHosts: k.file, Key: key, Want: ke.Want}
		}
		var re *knownhosts.RevokedError
		if errors.As(err, &re) {
			return &HostKeyError{Host: name, Address: hostname, KnownHosts: k.file, Key: key, Revoked: true}
		}
		return err
	}
}

// algorithms lists the host key algorithms known_hosts holds for addr, so the server is
// asked for the kind of key on file: otherwise a host with an ed25519 line could offer its
// RSA key first and look like a changed key.
func (k *knownHosts) algorithms(addr string) []string {
	_, probe, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(probe)
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if !errors.As(k.cb(addr, zeroTCPAddr, signer.PublicKey()), &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, w := range ke.Want {
		t := w.Key.Type()
		list := []string{t}
		if t == ssh.KeyAlgoRSA {
			list = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		}
		for _, a := range list {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

func (h *sshHost) keepalive() {
	t := time.NewTicker(keepaliveInterval)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := h.client.SendRequest("keepalive@openssh.com", true, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				h.client.Close()
				return
			}
			missed = 0
		case <-time.After(keepaliveInterval):
			if missed++; missed >= 3 {
				h.client.Close()
				return
			}
		case <-h.stop:
			return
		}
	}
}

func (h *sshHost) Name() string { return h.name }

func (h *sshHost) Close() error {
	var err error
	h.once.Do(func() {
		close(h.stop)
		if h.client != nil {
			err = h.client.Close()
		}
		if h.jump != nil {
			h.jump.Close()
		}
		for _, c := range h.closer {
			c.Close()
		}
	})
	return err
}

func (h *sshHost) Run(ctx context.Context, cmd string) (Result, error) {
	// Open stdin is the command's lifeline: it is closed when ctx is done, and the wrapper
	// then kills the command's whole process group. SSH signals cannot do this: OpenSSH
	// refuses them for root logins ("session signalling requires privilege separation").
	return h.run(ctx, cmd, killable(cmd), lifeline{})
}

// lifeline, as run's stdin, is held open until the command ends (see Run). Read is never
// called by run; elsewhere it reads as an empty stream.
type lifeline struct{}

func (lifeline) Read([]byte) (int, error) { return 0, io.EOF }

// killable wraps cmd so that its processes are killed as a group when the wrapper's stdin
// reaches end of file. Where sshd made the wrapper the leader of its own process group (a
// session leader, as OpenSSH does for every command), the command runs in that group and a
// cancel kills the whole group, wrapper included: no setsid to run on every command. Where
// it did not, killing the group would reach sshd's own processes, so the command gets its
// own session and group (setsid); its own pid is killed too and the group once more, for a
// cancel that lands before setsid has made the group.
func killable(cmd string) string {
	q := shq(cmd)
	return `exec 3<&0
s=; read -r s < /proc/$$/stat 2>/dev/null; s=${s##*) }; set -- $s
if [ "${3:-}" = "$$" ]; then
/bin/sh -c ` + q + ` </dev/null 3<&- & c=$!
{ read -r _ <&3; kill -9 0; } &
else
setsid /bin/sh -c ` + q + ` </dev/null 3<&- & c=$!
{ read -r _ <&3; kill -9 -$c $c 2>/dev/null; sleep 0.2; kill -9 -$c 2>/dev/null; } &
fi
w=$!
exec 3<&-
wait $c; rc=$?
kill $w 2>/dev/null
exit $rc`
}

// run runs script through /bin/sh on the host; shown is what error messages call it. stdin
// nil is an empty stdin, lifeline{} one held open until the command ends.
func (h *sshHost) run(ctx context.Context, shown, script string, stdin io.Reader) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("%s: command %q: %w", h.name, shown, err)
	}
	s, err := h.client.NewSession()
	if err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("%s: open SSH session: %w", h.name, err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	// The channel itself rather than Session.Stdin: for a Stdin reader the session copies
	// through an io.Pipe with two goroutines and two 32 KiB buffers per command, a third of
	// everything an apply over 300 nodes allocated.
	in, err := s.StdinPipe()
	if err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("%s: command %q: %w", h.name, shown, err)
	}
	endStdin := sync.OnceValue(in.Close)
	defer endStdin()
	start := time.Now()
	if err := s.Start("exec /bin/sh -c " + shq(script)); err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("%s: command %q: %w", h.name, shown, err)
	}
	switch stdin.(type) {
	case nil:
		endStdin()
	case lifeline:
	default:
		// A write blocks while the command does not read; closing the session (ctx done, or
		// the command ended) ends it.
		go func() {
			io.Copy(in, stdin)
			endStdin()
		}()
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// Closing the channel closes the remote stdin: see Run.
		s.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: -1, Duration: time.Since(start)}
		return res, fmt.Errorf("%s: command %q: %w", h.name, shown, ctx.Err())
	}
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), Duration: time.Since(start)}
	var ee *ssh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitStatus()
		if ee.Signal() != "" {
			res.ExitCode = -1
		}
		return res, &CmdError{Host: h.name, Cmd: shown, ExitCode: res.ExitCode, Stderr: string(res.Stderr)}
	default:
		res.ExitCode = -1
		return res, fmt.Errorf("%s: command %q: %w", h.name, shown, err)
	}
	return res, nil
}

func (h *sshHost) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := h.client.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("%s: dial %s through SSH: %w", h.name, addr, err)
	}
	return c, nil
}
