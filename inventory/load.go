package inventory

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// FormatVersion is the only inventory format this build reads.
const FormatVersion = 1

// Defaults for SSH, before the inventory's own values.
const (
	DefaultSSHUser        = "root"
	DefaultSSHPort        = 22
	DefaultConnectTimeout = 10 * time.Second
	DefaultKnownHosts     = "~/.ssh/known_hosts"
)

// Load reads, validates and resolves an inventory file. A file that is not valid returns a
// *ValidationError listing every problem, each with the file, line and field.
func Load(file string) (*Inventory, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFoundError{file}
	}
	if err != nil {
		return nil, fmt.Errorf("read inventory %s: %w", file, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, &ValidationError{File: file, Problems: []Problem{{File: file, Line: 0,
			Msg: fmt.Sprintf("a folder, not an inventory file: give the file with -i (e.g. -i %s)", filepath.Join(file, "inventory.yaml"))}}}
	}
	// An inventory of thousands of hosts is a few hundred KiB; a larger file is not one (a
	// log, a binary, /dev/zero) and is refused before it is read whole.
	data, err := io.ReadAll(io.LimitReader(f, MaxInventoryBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read inventory %s: %w", file, err)
	}
	if len(data) > MaxInventoryBytes {
		return nil, &ValidationError{File: file, Problems: []Problem{{File: file, Line: 1,
			Msg: fmt.Sprintf("the file is larger than %d MiB: not an inventory (give the cluster's inventory.yaml with -i)", MaxInventoryBytes>>20)}}}
	}
	return parse(file, data)
}

// yamlHint is the way out of a YAML syntax error: a file that is not text is not an
// inventory; otherwise the usual slips.
func yamlHint(msg string) string {
	if strings.Contains(msg, "control characters") {
		return " (not a text file: give the cluster's inventory.yaml)"
	}
	return " (fix the YAML at this line or the one before: indent with spaces, not tabs; close every bracket and quote)"
}

// MaxInventoryBytes bounds the inventory file mastershrink reads.
const MaxInventoryBytes = 8 << 20

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func parse(file string, data []byte) (*Inventory, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := 1, strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		return nil, &ValidationError{File: file, Problems: []Problem{{File: file, Line: line, Msg: "invalid YAML: " + msg + yamlHint(msg)}}}
	}
	d := &decoder{file: file, lines: map[string]int{}}
	inv := &Inventory{}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		d.problem(1, "", "the file is empty (want format_version, layout and hosts)")
		return nil, &ValidationError{File: file, Problems: d.probs}
	}
	d.decode(doc.Content[0], reflect.ValueOf(inv).Elem(), "")
	for i := range inv.Hosts {
		inv.Hosts[i].Line = d.lines[fmt.Sprintf("hosts[%d]", i)]
	}
	d.validate(inv)
	d.checkFiles(inv, localPather(file))
	if len(d.probs) > 0 {
		sortProblems(d.probs)
		return nil, &ValidationError{File: file, Problems: d.probs}
	}
	if err := resolve(inv, file); err != nil {
		return nil, err
	}
	return inv, nil
}

func sortProblems(ps []Problem) {
	// Stable insertion sort by line keeps the decoder's order within a line.
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].Line < ps[j-1].Line; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

// line returns where a field's value is, falling back to its nearest written parent so a
// missing field is reported at the entry that lacks it.
func (d *decoder) line(field string) int {
	for f := field; ; {
		if l, ok := d.lines[f]; ok && l > 0 {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			if l := d.lines[""]; l > 0 {
				return l
			}
			return 1
		}
		f = f[:i]
	}
}

func (d *decoder) at(field, format string, args ...any) {
	if d.bad[field] {
		return
	}
	d.problem(d.line(field), field, format, args...)
}

var hostNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)

func (d *decoder) validate(inv *Inventory) {
	switch inv.FormatVersion {
	case FormatVersion:
	case 0:
		d.at("format_version", "missing (want %d)", FormatVersion)
	default:
		d.at("format_version", "unsupported format_version %d (this mastershrink reads %d: use the mastershrink the file was written for, or write it as format_version: %d)", inv.FormatVersion, FormatVersion, FormatVersion)
	}
	if inv.Cluster == "" {
		d.at("cluster", "missing (want the cluster's name, e.g. cluster: prod-sh; plans and locks carry it)")
	} else if !hostNameRE.MatchString(inv.Cluster) {
		// The name becomes part of file names (CLUSTER-plan.json) and lock keys.
		d.at("cluster", "invalid cluster name %q (letters, digits, '.', '_' and '-')", inv.Cluster)
	}
	if inv.Layout == "" {
		d.at("layout", "missing (want %s)", layoutList())
	} else if _, ok := layouts[inv.Layout]; !ok {
		d.at("layout", "unknown layout %q (want %s)", inv.Layout, layoutList())
	}
	if inv.Kubeconfig == "" {
		d.at("kubeconfig", "missing (want the admin kubeconfig on this machine, e.g. kubeconfig: admin.kubeconfig, relative to the inventory's folder)")
	}
	d.validateSSH(inv.SSH, "ssh")
	d.validatePaths(inv.Paths, "paths")
	if len(inv.Hosts) == 0 {
		d.at("hosts", "no hosts (want at least one)")
	}
	names := map[string]string{}
	addrs := map[string]string{}
	for i, h := range inv.Hosts {
		p := fmt.Sprintf("hosts[%d]", i)
		switch {
		case h.Name == "":
			d.at(p+".name", "missing (want the host's name, e.g. name: m1, as --remove and --drain take it)")
		case !hostNameRE.MatchString(h.Name):
			d.at(p+".name", "invalid host name %q (letters, digits, '.', '_' and '-')", h.Name)
		case names[h.Name] != "":
			d.at(p+".name", "duplicate host name %q (first at line %d): give each host its own name", h.Name, d.line(names[h.Name]))
		default:
			names[h.Name] = p + ".name"
		}
		if h.Address == "" {
			d.at(p+".address", "missing (want the host's IP address or DNS name, e.g. address: 10.88.0.11)")
		} else if err := checkAddress(h.Address); err != nil {
			d.at(p+".address", "%v", err)
		} else {
			key := normalizeAddress(h.Address)
			if first, dup := addrs[key]; dup {
				d.at(p+".address", "address %s already used by another host (line %d): give each host its own address", h.Address, d.line(first))
			} else {
				addrs[key] = p + ".address"
			}
		}
		if len(h.Roles) == 0 {
			d.at(p+".roles", "no roles (want at least one of etcd, master, worker or lb)")
		}
		seen := map[Role]bool{}
		for j, r := range h.Roles {
			rp := fmt.Sprintf("%s.roles[%d]", p, j)
			switch {
			case r != RoleEtcd && r != RoleMaster && r != RoleWorker && r != RoleLB:
				d.at(rp, "unknown role %q (want etcd, master, worker or lb)", r)
			case seen[r]:
				d.at(rp, "role %q listed twice: list each role once", r)
			}
			seen[r] = true
		}
		d.validateSSH(h.SSH, p+".ssh")
		d.validatePaths(h.Paths, p+".paths")
	}
}

func (d *decoder) validateSSH(s SSH, p string) {
	if s.Port != 0 && (s.Port < 1 || s.Port > 65535) {
		d.at(p+".port", "port %d out of range (1-65535)", s.Port)
	}
	if strings.ContainsAny(s.User, " \t@:") {
		d.at(p+".user", "invalid user name %q", s.User)
	}
	if s.JumpHost != "" {
		if _, _, _, err := ParseJumpHost(s.JumpHost); err != nil {
			d.at(p+".jump_host", "%v", err)
		}
	}
}

func (d *decoder) validatePaths(ps Paths, p string) {
	for _, f := range []struct {
		name string
		port int
	}{{"apiserver_port", ps.APIServerPort}, {"etcd_client_port", ps.EtcdClientPort}, {"etcd_peer_port", ps.EtcdPeerPort}} {
		if f.port != 0 && (f.port < 1 || f.port > 65535) {
			d.at(p+"."+f.name, "port %d out of range (1-65535)", f.port)
		}
	}
	for _, f := range []struct{ name, val string }{
		{"nginx_binary", ps.NginxBinary}, {"nginx_prefix", ps.NginxPrefix},
		{"nginx_config", ps.NginxConfig}, {"pki_dir", ps.PKIDir},
		{"haproxy_config", ps.HAProxyConfig}, {"haproxy_binary", ps.HAProxyBinary},
	} {
		if f.val != "" && !path.IsAbs(f.val) {
			d.at(p+"."+f.name, "want an absolute path, got %q", f.val)
		}
	}
	for _, f := range []struct{ name, val string }{
		{"etcd_unit", ps.EtcdUnit}, {"apiserver_unit", ps.APIServerUnit},
		{"controller_manager_unit", ps.ControllerManagerUnit}, {"scheduler_unit", ps.SchedulerUnit},
		{"nginx_unit", ps.NginxUnit}, {"kubelet_unit", ps.KubeletUnit}, {"kube_proxy_unit", ps.KubeProxyUnit},
		{"haproxy_unit", ps.HAProxyUnit},
	} {
		if strings.ContainsAny(f.val, "/ \t") {
			d.at(p+"."+f.name, "invalid unit name %q", f.val)
		}
	}
	switch ps.Proxy {
	case "", ProxyNginx, ProxyHAProxy:
	default:
		d.at(p+".proxy", "unknown proxy %q (want nginx or haproxy, or leave it out to tell from the host; envoy and others are not supported: take the leaving masters out of such a proxy by hand)", ps.Proxy)
	}
	if ps.NginxListen != "" {
		if err := checkListen(ps.NginxListen); err != nil {
			d.at(p+".nginx_listen", "%v", err)
		}
	}
}

func checkListen(s string) error {
	h, port, err := splitHostPort(s)
	if err != nil {
		return fmt.Errorf("invalid listen address %q (want HOST:PORT, e.g. 127.0.0.1:8443)", s)
	}
	if h != "" && h != "*" {
		if err := checkAddress(h); err != nil {
			return fmt.Errorf("invalid listen address %q: %w", s, err)
		}
	}
	if port < 1 || port > 65535 {
		return fmt.Errorf("listen port %d out of range (1-65535)", port)
	}
	return nil
}

// resolve fills each host's effective SSH and Paths and makes local file paths absolute.
func resolve(inv *Inventory, file string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return fmt.Errorf("inventory %s: %w", file, err)
	}
	inv.File = abs
	localPath := localPather(abs)
	inv.Kubeconfig = localPath(inv.Kubeconfig)
	preset := layouts[inv.Layout]
	// What `ssh NAME` would use (User, Port, IdentityFile, ProxyJump in ~/.ssh/config) comes
	// between the defaults and the inventory's own settings.
	sc, err := LoadSSHConfig(DefaultSSHConfig)
	if err != nil {
		return err
	}
	for i := range inv.Hosts {
		h := &inv.Hosts[i]

		ssh := SSH{User: DefaultSSHUser, Port: DefaultSSHPort, KnownHosts: DefaultKnownHosts, ConnectTimeout: Duration(DefaultConnectTimeout)}
		fromConfig, err := sc.For(h.Name, h.Address)
		if err != nil {
			return fmt.Errorf("%s for host %s: %w", sc.File, h.Name, err)
		}
		overlay(&ssh, fromConfig)
		overlay(&ssh, inv.SSH)
		overlay(&ssh, h.SSH)
		ssh.Local = inv.SSH.Local || h.SSH.Local
		ssh.IdentityFile = localPath(ssh.IdentityFile)
		ssh.KnownHosts = localPath(ssh.KnownHosts)
		h.SSH = ssh

		paths := preset
		overlay(&paths, inv.Paths)
		overlay(&paths, h.Paths)
		absPKIPaths(&paths)
		h.Paths = paths.ForHost(h.Name)
	}
	return nil
}

// localPather returns how a path written in the inventory file names a file on this
// machine: "~/" is the user's home, and a relative path is relative to the inventory's
// folder, so the file means the same whatever the working directory.
func localPather(inventoryFile string) func(string) string {
	base := filepath.Dir(inventoryFile)
	if abs, err := filepath.Abs(inventoryFile); err == nil {
		base = filepath.Dir(abs)
	}
	home, _ := os.UserHomeDir() // only needed for "~/": an error shows as a relative path
	return func(p string) string {
		switch {
		case p == "":
			return ""
		case p == "~":
			return home
		case strings.HasPrefix(p, "~/"):
			return filepath.Join(home, p[2:])
		case filepath.IsAbs(p):
			return p
		}
		return filepath.Join(base, p)
	}
}

// absPKIPaths puts file names without a folder (ca.pem) inside PKIDir.
func absPKIPaths(p *Paths) {
	for _, f := range []*string{&p.CACert, &p.CAKey, &p.CAConfig, &p.CSRDir, &p.EtcdCACert, &p.EtcdCert, &p.EtcdKey} {
		if *f != "" && !path.IsAbs(*f) {
			*f = path.Join(p.PKIDir, *f)
		}
	}
}

// overlay copies every non-zero field of src over dst (both pointers to the same struct type).
func overlay[T any](dst *T, src T) {
	dv := reflect.ValueOf(dst).Elem()
	sv := reflect.ValueOf(src)
	for i := 0; i < sv.NumField(); i++ {
		if !sv.Field(i).IsZero() {
			dv.Field(i).Set(sv.Field(i))
		}
	}
}

// ParseJumpHost splits "[user@]host[:port]" (IPv6 as "[::1]:22"). User is empty and port 22
// when not given.
func ParseJumpHost(s string) (user, host string, port int, err error) {
	rest := s
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		user, rest = rest[:i], rest[i+1:]
		if user == "" {
			return "", "", 0, fmt.Errorf("invalid jump host %q: empty user before '@'", s)
		}
	}
	host, port = rest, DefaultSSHPort
	if strings.HasPrefix(rest, "[") || strings.Count(rest, ":") == 1 {
		h, p, perr := splitHostPort(rest)
		if perr != nil {
			return "", "", 0, fmt.Errorf("invalid jump host %q (want [user@]host[:port])", s)
		}
		host, port = h, p
	}
	if err := checkAddress(host); err != nil {
		return "", "", 0, fmt.Errorf("invalid jump host %q: %w", s, err)
	}
	if port < 1 || port > 65535 {
		return "", "", 0, fmt.Errorf("invalid jump host %q: port %d out of range (1-65535)", s, port)
	}
	return user, host, port, nil
}

func splitHostPort(s string) (string, int, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return "", 0, errors.New("missing port")
	}
	h, ps := s[:i], s[i+1:]
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	p, err := strconv.Atoi(ps)
	if err != nil {
		return "", 0, fmt.Errorf("invalid port %q", ps)
	}
	return h, p, nil
}
