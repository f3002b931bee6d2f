package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// DefaultSSHConfig is the operator's OpenSSH client configuration.
const DefaultSSHConfig = "~/.ssh/config"

// SSHConfig is an OpenSSH client configuration, read with kevinburke/ssh_config rather than
// a parser of our own: an operator who reaches m1 as `ssh m1` (its User, Port, IdentityFile
// and ProxyJump in ~/.ssh/config) should not have to say it again in the inventory.
type SSHConfig struct {
	File string
	cfg  *ssh_config.Config
}

// LoadSSHConfig reads an ssh_config file; a missing file is no configuration (nil, nil).
func LoadSSHConfig(path string) (*SSHConfig, error) {
	path = expandTilde(path)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ssh config %s: %w", path, err)
	}
	cfg, err := ssh_config.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("ssh config %s: %w", path, err)
	}
	return &SSHConfig{File: path, cfg: cfg}, nil
}

// For returns what the configuration says for a host, as OpenSSH would find it for
// `ssh NAME`, else for `ssh ADDRESS`: User, Port, IdentityFile (the first, tokens and ~
// expanded) and ProxyJump. Unset fields are left zero, so the inventory's own values can be
// laid over it.
func (c *SSHConfig) For(name, address string) (SSH, error) {
	var s SSH
	if c == nil {
		return s, nil
	}
	get := func(key string) (string, error) {
		for _, alias := range []string{name, address} {
			if alias == "" {
				continue
			}
			v, err := c.cfg.Get(alias, key)
			if err != nil {
				return "", fmt.Errorf("%s: %s for %s: %w", c.File, key, alias, err)
			}
			if v != "" {
				return v, nil
			}
		}
		return "", nil
	}
	v, err := get("User")
	if err != nil {
		return s, err
	}
	s.User = v
	if v, err = get("Port"); err != nil {
		return s, err
	}
	if v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return s, fmt.Errorf("%s: Port %q for %s is no port", c.File, v, name)
		}
		s.Port = n
	}
	if v, err = get("IdentityFile"); err != nil {
		return s, err
	}
	if v != "" && !strings.EqualFold(v, "none") {
		s.IdentityFile = expandTilde(expandTokens(v, address, s.User))
	}
	if v, err = get("ProxyJump"); err != nil {
		return s, err
	}
	switch {
	case v == "" || strings.EqualFold(v, "none"):
	case strings.Contains(v, ","):
		return s, fmt.Errorf("%s: ProxyJump %s for %s has several hops; mastershrink goes through one: set ssh.jump_host in the inventory", c.File, v, name)
	default:
		jump := strings.TrimPrefix(v, "ssh://")
		if _, _, _, err := ParseJumpHost(jump); err != nil {
			return s, fmt.Errorf("%s: ProxyJump %s for %s: %w", c.File, v, name, err)
		}
		s.JumpHost = jump
	}
	return s, nil
}

// expandTokens expands the ssh_config tokens an IdentityFile uses: %d (home), %h (the
// host), %r (the remote user), %u (the local user) and %%.
func expandTokens(v, host, remoteUser string) string {
	if !strings.Contains(v, "%") {
		return v
	}
	local := ""
	if u, err := user.Current(); err == nil {
		local = u.Username
	}
	home, _ := os.UserHomeDir()
	r := strings.NewReplacer("%%", "%", "%d", home, "%h", host, "%r", remoteUser, "%u", local)
	return r.Replace(v)
}

func expandTilde(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}
