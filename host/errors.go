package host

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ErrFileChanged is returned by WriteFile when the file changed between the moment it was
// read and the moment it would have been replaced: nothing is written then, so a concurrent
// edit is never lost.
var ErrFileChanged = errors.New("file changed while it was being replaced")

// UnreachableError is a host that could not be reached: no TCP connection, or no SSH
// handshake within the connection timeout.
type UnreachableError struct {
	Host    string
	Address string // host:port that was dialled
	// Via names the jump host the connection went through, empty for a direct one.
	Via string
	Err error
}

func (e *UnreachableError) Error() string {
	via := ""
	if e.Via != "" {
		via = " via jump host " + e.Via
	}
	return fmt.Sprintf("host %s unreachable at %s%s: %v", e.Host, e.Address, via, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// AuthError is a host that answered but refused the user or every key offered.
type AuthError struct {
	Host    string
	Address string
	User    string
	Err     error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("ssh to %s (%s) as %s refused: %v (check ssh.user and ssh.identity_file in the inventory, or the keys in ssh-agent)",
		e.Host, e.Address, e.User, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

// HostKeyError is a host whose key could not be verified against known_hosts: unknown
// (Want empty), changed (Want holds the keys on file), or revoked.
type HostKeyError struct {
	Host       string
	Address    string // host:port as checked against known_hosts
	KnownHosts string
	Key        ssh.PublicKey // the key the host offered
	Want       []knownhosts.KnownKey
	Revoked    bool
}

func (e *HostKeyError) Error() string {
	host, port := splitAddr(e.Address)
	keyscan := fmt.Sprintf("ssh-keyscan -p %s %s >> %s", port, host, e.KnownHosts)
	fp := e.Key.Type() + " " + ssh.FingerprintSHA256(e.Key)
	switch {
	case e.Revoked:
		return fmt.Sprintf("host key of %s (%s) is revoked in %s (offered %s): refusing to connect", e.Host, e.Address, e.KnownHosts, fp)
	case len(e.Want) == 0:
		return fmt.Sprintf("host key of %s (%s) is unknown: it is not in %s; the host offered %s: check that fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then add it with: %s",
			e.Host, e.Address, e.KnownHosts, fp, keyscan)
	}
	var on []string
	for _, w := range e.Want {
		on = append(on, fmt.Sprintf("%s:%d (%s %s)", w.Filename, w.Line, w.Key.Type(), ssh.FingerprintSHA256(w.Key)))
	}
	return fmt.Sprintf("host key of %s (%s) has CHANGED: it offered %s but %s holds a different key; this may be a man-in-the-middle attack: if the host was reinstalled and you trust the new key, remove the old entry with: ssh-keygen -R '%s' -f %s, then add the new one with: %s",
		e.Host, e.Address, fp, strings.Join(on, ", "), knownhosts.Normalize(e.Address), e.KnownHosts, keyscan)
}

func splitAddr(addr string) (host, port string) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return addr, "22"
	}
	return strings.Trim(addr[:i], "[]"), addr[i+1:]
}
