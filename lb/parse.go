package lb

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/tufanbarisyildirim/gonginx/parser"
)

// Server is one `server` line of a stream upstream (nginx) or of a backend (haproxy).
type Server struct {
	// Name is haproxy's server name; nginx servers have none.
	Name string `json:"name,omitempty"`
	// Address is the address as written ("10.88.0.12:6443").
	Address string `json:"address"`
	// Params are the parameters after the address, in their written order.
	Params []string `json:"params,omitempty"`
	Down   bool     `json:"down,omitempty"`
	File   string   `json:"file"`
	// Line is the 1-based line of the directive's name.
	Line int `json:"line"`
}

// Upstream is a stream upstream (nginx), or a backend or listen section (haproxy), that
// fronts at least one apiserver.
type Upstream struct {
	Name    string   `json:"name"`
	File    string   `json:"file"`
	Line    int      `json:"line"`
	Servers []Server `json:"servers"`
}

// NodeConfig is one node's proxy configuration as observed.
type NodeConfig struct {
	Host string `json:"host"`
	// Kind is the proxy: empty for nginx, KindHAProxy for haproxy.
	Kind string `json:"kind,omitempty"`
	// Main is the main configuration file (nginx -c).
	Main string `json:"main"`
	// Files holds every file read, the main one and every include: path to content.
	Files map[string]string `json:"files"`
	// Upstreams are the stream upstreams fronting the apiservers, in file order.
	Upstreams []Upstream `json:"upstreams"`
	// Listen is where to dial the node's proxy from the node itself ("127.0.0.1:8443"): the
	// listen of the first stream server passing to one of Upstreams, with a wildcard address
	// turned into loopback. Empty when no such server was found.
	Listen string `json:"listen,omitempty"`
	// Resolved maps the host names of the upstream servers to the addresses they resolve to
	// on the node, as nginx resolves them when it loads the config: a server named by host
	// name is the apiserver at those addresses.
	Resolved map[string][]string `json:"resolved,omitempty"`
}

// keys are the address keys a server stands for: its address as written and, for a host
// name, every address it resolves to on the node, with its port.
func (cfg NodeConfig) keys(s Server) []string {
	key := addrKey
	if cfg.Kind == KindHAProxy {
		key = hapAddrKey
	}
	k, err := key(s.Address)
	if err != nil {
		return nil
	}
	out := []string{k}
	h, p, _ := net.SplitHostPort(k)
	for _, a := range cfg.Resolved[h] {
		if ak, err := addrKey(net.JoinHostPort(a, p)); err == nil {
			out = append(out, ak)
		}
	}
	return out
}

// ServerNames lists the host names (not addresses) of the servers of every stream upstream
// in the config, sorted: what to resolve on the node before ParseResolved.
func ServerNames(mainPath string, files map[string]string) []string {
	var out []string
	parse("", mainPath, files, nil, nil, func(s Server) {
		if k, err := addrKey(s.Address); err == nil {
			out = appendName(out, k)
		}
	})
	sort.Strings(out)
	return out
}

// maxIncludeDepth stops include cycles; nginx itself has no limit but would loop forever.
const maxIncludeDepth = 16

// Parse reads a node's configuration from files (main plus includes, as Observe reads them),
// following include directives, and returns the stream upstreams that front any of
// apiservers (host:port). Relative includes are resolved against the main file's folder, as
// nginx resolves them against its conf prefix. Errors name file:line.
func Parse(host, mainPath string, files map[string]string, apiservers []string) (NodeConfig, error) {
	return parse(host, mainPath, files, apiservers, nil, nil)
}

// ParseResolved is Parse with the upstream servers' host names resolved on the node
// (ServerNames, then machine.Resolve): a server named m2.example.com is the apiserver at the
// addresses m2.example.com resolves to there.
func ParseResolved(host, mainPath string, files map[string]string, apiservers []string, resolved map[string][]string) (NodeConfig, error) {
	return parse(host, mainPath, files, apiservers, resolved, nil)
}

// parse is Parse; each server of every stream upstream is also given to seen, if set.
func parse(host, mainPath string, files map[string]string, apiservers []string, resolved map[string][]string, seen func(Server)) (NodeConfig, error) {
	cfg := NodeConfig{Host: host, Main: mainPath, Files: files, Resolved: byLowerName(resolved)}
	want, err := addrKeys("apiserver", apiservers)
	if err != nil {
		return cfg, err
	}
	if _, ok := files[mainPath]; !ok {
		return cfg, fmt.Errorf("%s: not among the files read", mainPath)
	}
	r := &resolver{files: files, confDir: path.Dir(mainPath), parsed: map[string][]*stmt{}}
	top, err := r.file(mainPath, 0)
	if err != nil {
		return cfg, err
	}
	for f := range r.parsed {
		if err := crossCheck(f, files[f], r.parsed[f]); err != nil {
			return cfg, err
		}
	}

	// Walk the expanded tree with its block context.
	var proxies []streamServer
	var walkErr error
	var walk func(stmts []*stmt, ctx []string)
	walk = func(stmts []*stmt, ctx []string) {
		inStream := len(ctx) == 1 && ctx[0] == "stream"
		for _, s := range stmts {
			if walkErr != nil {
				return
			}
			if inStream && s.name.val == "upstream" && s.hasBlock() && len(s.args) == 1 {
				u, ok, err := upstreamOf(cfg, s, want)
				if err != nil {
					walkErr = err
					return
				}
				if ok {
					cfg.Upstreams = append(cfg.Upstreams, u)
				}
				if seen != nil {
					for _, srv := range u.Servers {
						seen(srv)
					}
				}
				continue
			}
			if inStream && s.name.val == "server" && s.hasBlock() {
				proxies = append(proxies, streamServerOf(s))
			}
			if s.hasBlock() {
				walk(s.block, append(slices.Clip(ctx), s.name.val))
			}
		}
	}
	walk(top, nil)
	if walkErr != nil {
		return cfg, walkErr
	}

	for _, p := range proxies {
		for _, u := range cfg.Upstreams {
			if p.proxyPass == u.Name && p.listen != "" && cfg.Listen == "" {
				cfg.Listen = dialAddr(p.listen)
			}
		}
	}
	return cfg, nil
}

// resolver expands include directives in place against the files map.
type resolver struct {
	files   map[string]string
	confDir string
	parsed  map[string][]*stmt
}

func (r *resolver) file(name string, depth int) ([]*stmt, error) {
	if depth > maxIncludeDepth {
		return nil, fmt.Errorf("%s: includes nested deeper than %d (a cycle?)", name, maxIncludeDepth)
	}
	stmts, ok := r.parsed[name]
	if !ok {
		var err error
		stmts, err = parseStmts(name, r.files[name])
		if err != nil {
			return nil, err
		}
		r.parsed[name] = stmts
	}
	return r.expand(stmts, depth)
}

func (r *resolver) expand(stmts []*stmt, depth int) ([]*stmt, error) {
	out := make([]*stmt, 0, len(stmts))
	for _, s := range stmts {
		if s.name.val == "include" && !s.hasBlock() {
			if len(s.args) != 1 {
				return nil, fmt.Errorf("%s:%d: include takes one argument", s.file, s.name.line)
			}
			names, err := r.matches(s.args[0].val)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: include %s: %w", s.file, s.name.line, s.args[0].val, err)
			}
			for _, n := range names {
				sub, err := r.file(n, depth+1)
				if err != nil {
					return nil, err
				}
				out = append(out, sub...)
			}
			continue
		}
		if s.hasBlock() {
			b, err := r.expand(s.block, depth)
			if err != nil {
				return nil, err
			}
			c := *s
			c.block = b
			s = &c
		}
		out = append(out, s)
	}
	return out, nil
}

// IncludePath resolves an include argument as nginx does: relative to the conf prefix, the
// folder of the main configuration file.
func IncludePath(confDir, arg string) string {
	if path.IsAbs(arg) {
		return path.Clean(arg)
	}
	return path.Join(confDir, arg)
}

// HasGlob says whether an include argument is a pattern.
func HasGlob(p string) bool { return strings.ContainsAny(p, "*?[") }

func (r *resolver) matches(arg string) ([]string, error) {
	p := IncludePath(r.confDir, arg)
	if !HasGlob(p) {
		if _, ok := r.files[p]; !ok {
			return nil, fmt.Errorf("%s was not read (the include names a file that is not on the node): fix the include, or point nginx_config at the config nginx runs", p)
		}
		return []string{p}, nil
	}
	var out []string
	for f := range r.files {
		ok, err := path.Match(p, f)
		if err != nil {
			return nil, err
		}
		// nginx's glob skips hidden files.
		if ok && !strings.HasPrefix(path.Base(f), ".") {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out, nil
}

func upstreamOf(cfg NodeConfig, s *stmt, want map[string]bool) (Upstream, bool, error) {
	u := Upstream{Name: s.args[0].val, File: s.file, Line: s.name.line}
	fronts := false
	for _, d := range s.block {
		if d.name.val != "server" || d.hasBlock() || len(d.args) == 0 {
			continue
		}
		if err := checkServerParams(u.Name, d); err != nil {
			return u, false, err
		}
		args := d.argVals()
		srv := Server{Address: args[0], Params: args[1:], File: d.file, Line: d.name.line}
		srv.Down = slices.Contains(srv.Params, "down")
		for _, k := range cfg.keys(srv) {
			fronts = fronts || want[k]
		}
		u.Servers = append(u.Servers, srv)
	}
	return u, fronts, nil
}

// serverParams are the parameters nginx's stream upstream takes after a server's address
// (ngx_stream_upstream_server): those ending in '=' take a value.
var serverParams = []string{"weight=", "max_conns=", "max_fails=", "fail_timeout=", "backup", "down", "resolve", "service="}

// checkServerParams refuses a stream upstream server line that nginx -t would refuse for an
// unknown parameter. The common cause is a missing ';': the line then swallows the next
// server line, whose "server" and address would silently become parameters of this one.
func checkServerParams(upstream string, d *stmt) error {
	for _, a := range d.args[1:] {
		known := slices.ContainsFunc(serverParams, func(p string) bool {
			if strings.HasSuffix(p, "=") {
				return strings.HasPrefix(a.val, p) && len(a.val) > len(p)
			}
			return a.val == p
		})
		if known {
			continue
		}
		msg := fmt.Sprintf("%s:%d: upstream %s: server %s: invalid parameter %q", d.file, d.name.line, upstream, d.args[0].val, a.val)
		if a.line > d.name.line {
			return fmt.Errorf("%s on line %d (is the ';' missing at the end of line %d?)", msg, a.line, a.line-1)
		}
		return fmt.Errorf("%s (nginx -t would refuse it)", msg)
	}
	return nil
}

type streamServer struct {
	listen    string
	proxyPass string
}

func streamServerOf(s *stmt) streamServer {
	var ss streamServer
	for _, d := range s.block {
		switch {
		case d.name.val == "listen" && len(d.args) > 0 && ss.listen == "":
			ss.listen = d.args[0].val
		case d.name.val == "proxy_pass" && len(d.args) == 1:
			ss.proxyPass = d.args[0].val
		}
	}
	return ss
}

// dialAddr turns a listen argument into an address to dial from the node itself.
func dialAddr(listen string) string {
	if !strings.Contains(listen, ":") || strings.HasPrefix(listen, "unix:") {
		if strings.HasPrefix(listen, "unix:") {
			return ""
		}
		return net.JoinHostPort("127.0.0.1", listen)
	}
	h, p, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	return net.JoinHostPort(dialHost(h), p)
}

// dialHost is the host to dial a listener bound at h from the node itself: a wildcard bind
// answers on loopback.
func dialHost(h string) string {
	switch h {
	case "*", "", "0.0.0.0":
		return "127.0.0.1"
	case "::":
		return "::1"
	}
	return h
}

// addrKeys are the address keys of addrs (host:port), the set a config's servers are matched
// against; an error names the address as one of role's ("apiserver").
func addrKeys(role string, addrs []string) (map[string]bool, error) {
	keys := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		k, err := addrKey(a)
		if err != nil {
			return nil, fmt.Errorf("%s address %q: %w", role, a, err)
		}
		keys[k] = true
	}
	return keys, nil
}

// byLowerName is resolved keyed by lower-case host name, as the address keys name hosts (DNS
// names are case-insensitive); nil when there is nothing resolved.
func byLowerName(resolved map[string][]string) map[string][]string {
	if len(resolved) == 0 {
		return nil
	}
	out := make(map[string][]string, len(resolved))
	for n, addrs := range resolved {
		out[strings.ToLower(n)] = addrs
	}
	return out
}

// appendName adds the host of the address key k to names when it is a name (an address needs
// no resolving) not listed yet.
func appendName(names []string, k string) []string {
	h, _, _ := net.SplitHostPort(k)
	if _, err := netip.ParseAddr(h); err != nil && !slices.Contains(names, h) {
		names = append(names, h)
	}
	return names
}

// addrKey normalizes host:port so "10.0.0.1:6443", "[::1]:6443" and "[0::1]:6443" compare
// as nginx would treat them. A name without a port gets nginx's default 80.
func addrKey(a string) (string, error) {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		if strings.Contains(a, "]") || strings.Count(a, ":") > 1 {
			return "", err
		}
		h, p = a, "80"
	}
	if ip, ok := nginxIPv4(h); ok {
		h = ip.String()
	} else if ip, err := netip.ParseAddr(h); err == nil {
		h = ip.Unmap().String()
	} else {
		h = strings.ToLower(h)
	}
	return net.JoinHostPort(h, p), nil
}

// crossCheck parses the file with gonginx and requires it to see the same upstream servers at
// the same lines as the scanner, so a scanner mistake cannot edit the wrong text.
func crossCheck(file, text string, stmts []*stmt) error {
	c, err := parser.NewStringParser(text, parser.WithSkipValidDirectivesErr()).Parse()
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	var theirs []string
	for _, u := range c.FindUpstreams() {
		for _, s := range u.UpstreamServers {
			theirs = append(theirs, fmt.Sprintf("%s %s %d", u.UpstreamName, s.Address, s.GetLine()))
		}
	}
	var ours []string
	var walk func([]*stmt)
	walk = func(ss []*stmt) {
		for _, s := range ss {
			if s.name.val == "upstream" && s.hasBlock() && len(s.args) > 0 {
				for _, d := range s.block {
					if d.name.val == "server" && len(d.args) > 0 {
						// gonginx records a directive's line at its terminating ';'.
						ours = append(ours, fmt.Sprintf("%s %s %d", s.args[0].val, d.args[0].val, d.end.line))
					}
				}
				continue
			}
			walk(s.block)
		}
	}
	walk(stmts)
	sort.Strings(theirs)
	sort.Strings(ours)
	if !slices.Equal(theirs, ours) {
		return fmt.Errorf("%s: upstream servers located differently by gonginx (%v) and by the scanner (%v)", file, theirs, ours)
	}
	return nil
}

// nginxIPv4 parses a dotted quad the way ngx_inet_addr does, which allows leading zeros
// (10.0.0.02 is 10.0.0.2 to nginx, where Go would refuse it).
func nginxIPv4(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	var b [4]byte
	for i, p := range parts {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return netip.Addr{}, false
		}
		n, _ := strconv.Atoi(p)
		if n > 255 {
			return netip.Addr{}, false
		}
		b[i] = byte(n)
	}
	return netip.AddrFrom4(b), true
}
