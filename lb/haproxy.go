package lb

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// KindHAProxy is NodeConfig.Kind for haproxy. nginx's kind is the empty string, so the facts
// of plans made before haproxy was supported read the same.
const KindHAProxy = "haproxy"

// haproxy.cfg is line based: a section keyword starts a section, every other line belongs to
// the section above it. The reader keeps each word's byte offsets, as the nginx scanner does,
// so a rewrite edits the original text and nothing else.

// hapSectionKinds are the keywords that open a section (haproxy 2.6 and later).
var hapSectionKinds = []string{
	"global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist",
	"mailers", "program", "http-errors", "ring", "cache", "fcgi-app", "log-forward", "traces",
	"crt-store", "acme", "httpclient",
}

type hapLine struct {
	// start and end are the byte offsets of the line, end before its '\n'.
	start, end int
	line       int
	words      []token
}

func (l hapLine) vals() []string {
	out := make([]string, len(l.words))
	for i, w := range l.words {
		out[i] = w.val
	}
	return out
}

type hapSection struct {
	kind, name string
	line       int
	lines      []hapLine
}

// hapWords splits one line as haproxy's parse_line does: blanks separate words, '#' starts a
// comment, single quotes are literal, double quotes and backslashes escape. A word holding an
// environment variable ("${VIP}:6443") keeps its '$': it cannot be matched against an
// address, and the caller refuses it where that matters.
func hapWords(file string, lineNo int, text string, off int) ([]token, error) {
	var out []token
	i := 0
	for i < len(text) {
		c := text[i]
		if c == ' ' || c == '\t' || c == '\r' {
			i++
			continue
		}
		if c == '#' {
			break
		}
		start := i
		var val strings.Builder
		squote, dquote := false, false
	word:
		for i < len(text) {
			c := text[i]
			switch {
			case c == '\'' && !dquote:
				squote = !squote
				i++
			case c == '"' && !squote:
				dquote = !dquote
				i++
			case c == '\\' && !squote && i+1 < len(text):
				switch n := text[i+1]; n {
				case 'n':
					val.WriteByte('\n')
				case 'r':
					val.WriteByte('\r')
				case 't':
					val.WriteByte('\t')
				default:
					val.WriteByte(n)
				}
				i += 2
			case !squote && !dquote && (c == ' ' || c == '\t' || c == '\r' || c == '#'):
				break word
			default:
				val.WriteByte(c)
				i++
			}
		}
		if squote || dquote {
			return nil, fmt.Errorf("%s:%d: unterminated quote (haproxy -c would refuse it)", file, lineNo)
		}
		out = append(out, token{kind: tokWord, val: val.String(), start: off + start, end: off + i, line: lineNo})
	}
	return out, nil
}

// parseHAProxy reads the sections of one haproxy.cfg.
func parseHAProxy(file, text string) ([]*hapSection, error) {
	if len(text) > maxConfigBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d MiB a proxy config can be: is haproxy_config the right file?", file, len(text), maxConfigBytes>>20)
	}
	var out []*hapSection
	var cur *hapSection
	off := 0
	for n := 1; off <= len(text); n++ {
		end := strings.IndexByte(text[off:], '\n')
		if end < 0 {
			end = len(text)
		} else {
			end += off
		}
		words, err := hapWords(file, n, text[off:end], off)
		if err != nil {
			return nil, err
		}
		l := hapLine{start: off, end: end, line: n, words: words}
		off = end + 1
		if len(words) == 0 {
			continue
		}
		kw := words[0].val
		switch {
		case kw == ".if" || kw == ".elif" || kw == ".else" || kw == ".endif":
			// Which lines haproxy keeps depends on its version and environment: an edit of
			// a server inside or after such a block could be one haproxy never reads.
			return nil, fmt.Errorf("%s:%d: conditional block (%s): mastershrink cannot tell which lines haproxy uses; take the leaving masters out of this proxy by hand, or write the config without .if", file, n, kw)
		case strings.HasPrefix(kw, "."):
			// .notice, .warning, .alert, .diag: messages only.
		case slices.Contains(hapSectionKinds, kw):
			cur = &hapSection{kind: kw, line: n}
			if len(words) > 1 {
				cur.name = words[1].val
			}
			out = append(out, cur)
		case cur == nil:
			return nil, fmt.Errorf("%s:%d: %q before any section (haproxy -c would refuse it): is haproxy_config an haproxy configuration?", file, n, kw)
		default:
			cur.lines = append(cur.lines, l)
		}
	}
	return out, nil
}

// hapAddrKey is addrKey for a server address as haproxy writes it: "10.0.0.1:6443",
// "m2.example.com:6443", "ipv4@10.0.0.1:6443", "[::1]:6443" or "::1:6443". What haproxy
// reads at run time (no port: the client's destination port; a port offset; an environment
// variable; a UNIX socket) cannot be compared with an apiserver address, and is an error.
func hapAddrKey(a string) (string, error) {
	s := a
	for _, p := range []string{"ipv4@", "ipv6@", "tcp@", "tcp4@", "tcp6@"} {
		s = strings.TrimPrefix(s, p)
	}
	switch {
	case strings.Contains(s, "$"):
		return "", fmt.Errorf("names an environment variable, which haproxy expands at start")
	case strings.Contains(s, "@") || strings.HasPrefix(s, "/"):
		return "", fmt.Errorf("is not a TCP address")
	}
	var h, p string
	if strings.HasPrefix(s, "[") {
		var err error
		if h, p, err = net.SplitHostPort(s); err != nil {
			return "", err
		}
	} else {
		i := strings.LastIndexByte(s, ':')
		if i < 0 {
			return "", fmt.Errorf("has no port (haproxy then uses the port each client connected to)")
		}
		h, p = s[:i], s[i+1:]
	}
	if strings.HasPrefix(p, "+") || strings.HasPrefix(p, "-") {
		return "", fmt.Errorf("has a port offset (%s), relative to the port each client connected to", p)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("has no valid port (%q)", p)
	}
	if h == "" || h == "*" {
		return "", fmt.Errorf("has no host")
	}
	return addrKey(net.JoinHostPort(h, p))
}

// hapDown says whether a server is disabled: the last of disabled and enabled in params
// (default-server's, then its own) wins, as haproxy applies them in order.
func hapDown(params []string) bool {
	down := false
	for _, p := range params {
		switch p {
		case "disabled":
			down = true
		case "enabled":
			down = false
		}
	}
	return down
}

// HAProxyServerNames lists the host names (not addresses) of the servers in an haproxy.cfg,
// sorted: what to resolve on the node before ParseHAProxy, as haproxy resolves them (libc)
// when it loads the config.
func HAProxyServerNames(file, text string) []string {
	secs, err := parseHAProxy(file, text)
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range secs {
		if s.kind != "backend" && s.kind != "listen" {
			continue
		}
		for _, l := range s.lines {
			if l.words[0].val != "server" || len(l.words) < 3 {
				continue
			}
			if k, err := hapAddrKey(l.words[2].val); err == nil {
				out = appendName(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// ParseHAProxy reads a node's haproxy.cfg and returns the backends (and listen sections) that
// front any of apiservers (host:port), as Upstreams, and in Listen where the frontend that
// uses them binds. resolved maps the servers' host names to their addresses on the node
// (HAProxyServerNames, then machine.Resolve). What cannot be edited safely is an error
// naming file:line: a server-template or a server address that cannot be matched in a
// backend that fronts an apiserver, a conditional block, a config that does not read.
func ParseHAProxy(host, file, text string, apiservers []string, resolved map[string][]string) (NodeConfig, error) {
	cfg := NodeConfig{Host: host, Main: file, Files: map[string]string{file: text}, Kind: KindHAProxy, Resolved: byLowerName(resolved)}
	want, err := addrKeys("apiserver", apiservers)
	if err != nil {
		return cfg, err
	}
	secs, err := parseHAProxy(file, text)
	if err != nil {
		return cfg, err
	}

	type front struct {
		binds    []string
		backends []string
	}
	var fronts []front
	fronting := map[string]bool{}
	var defServer []string
	defBackend := ""
	for _, s := range secs {
		switch s.kind {
		case "defaults":
			defServer, defBackend = nil, ""
			for _, l := range s.lines {
				switch v := l.vals(); v[0] {
				case "default-server":
					defServer = append(defServer, v[1:]...)
				case "default_backend":
					if len(v) > 1 {
						defBackend = v[1]
					}
				}
			}
			continue
		case "frontend", "listen", "backend":
		default:
			continue
		}
		f := front{}
		hasDefault := false
		u := Upstream{Name: s.name, File: file, Line: s.line}
		local := slices.Clone(defServer)
		var template *hapLine
		var unmatched []string
		frontsAPI := false
		for i, l := range s.lines {
			v := l.vals()
			switch v[0] {
			case "bind":
				if len(v) > 1 && s.kind != "backend" {
					f.binds = append(f.binds, v[1])
				}
			case "default_backend":
				if len(v) > 1 {
					f.backends = append(f.backends, v[1])
					hasDefault = true
				}
			case "use_backend":
				if len(v) > 1 {
					f.backends = append(f.backends, v[1])
				}
			case "default-server":
				local = append(local, v[1:]...)
			case "server-template":
				template = &s.lines[i]
			case "server":
				if s.kind == "frontend" {
					continue
				}
				if len(v) < 3 {
					return cfg, fmt.Errorf("%s:%d: server needs a name and an address (haproxy -c would refuse it)", file, l.line)
				}
				srv := Server{Name: v[1], Address: v[2], Params: v[3:], File: file, Line: l.line}
				srv.Down = hapDown(append(slices.Clone(local), srv.Params...))
				if _, err := hapAddrKey(srv.Address); err != nil {
					unmatched = append(unmatched, fmt.Sprintf("%s:%d: server %s %s %v", file, l.line, srv.Name, srv.Address, err))
				}
				for _, k := range cfg.keys(srv) {
					frontsAPI = frontsAPI || want[k]
				}
				u.Servers = append(u.Servers, srv)
			}
		}
		if s.kind != "backend" {
			if !hasDefault && defBackend != "" {
				f.backends = append(f.backends, defBackend)
			}
			if s.kind == "listen" && frontsAPI {
				f.backends = append(f.backends, s.name)
			}
			fronts = append(fronts, f)
		}
		if !frontsAPI {
			continue
		}
		if template != nil {
			return cfg, fmt.Errorf("%s:%d: %s %s: server-template makes its servers when haproxy runs (from DNS), so mastershrink cannot take one out by editing the file: write the apiservers as server lines, or take the leaving masters out of DNS and of this proxy by hand", file, template.line, s.kind, s.name)
		}
		if len(unmatched) > 0 {
			return cfg, fmt.Errorf("%s %s fronts the apiservers, but mastershrink cannot tell which apiserver these servers are: %s; write them as ADDRESS:PORT or HOSTNAME:PORT", s.kind, s.name, strings.Join(unmatched, "; "))
		}
		fronting[s.name] = true
		cfg.Upstreams = append(cfg.Upstreams, u)
	}
	for _, f := range fronts {
		if cfg.Listen != "" {
			break
		}
		for _, b := range f.backends {
			if fronting[b] && len(f.binds) > 0 {
				cfg.Listen = hapDialAddr(f.binds[0])
				break
			}
		}
	}
	return cfg, nil
}

// hapDialAddr turns the first address of a bind line ("*:6443", ":6443",
// "127.0.0.1:6443,10.0.0.1:6443", "ipv4@0.0.0.0:6443") into one to dial from the node.
func hapDialAddr(bind string) string {
	a, _, _ := strings.Cut(bind, ",")
	for _, p := range []string{"ipv4@", "ipv6@", "tcp@", "tcp4@", "tcp6@"} {
		a = strings.TrimPrefix(a, p)
	}
	if strings.Contains(a, "@") || strings.HasPrefix(a, "/") || strings.Contains(a, "$") {
		return ""
	}
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return ""
	}
	h, p := a[:i], a[i+1:]
	if lo, _, ok := strings.Cut(p, "-"); ok {
		p = lo // a port range: its first port
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return net.JoinHostPort(dialHost(h), p)
}

// rewriteHAProxyFile marks the servers disabled (appending the keyword, before any comment)
// or deletes their lines.
func rewriteHAProxyFile(file, text string, servers []Server, mode Mode) (string, error) {
	secs, err := parseHAProxy(file, text)
	if err != nil {
		return "", err
	}
	type key struct {
		line int
		addr string
	}
	found := map[key]hapLine{}
	for _, s := range secs {
		if s.kind != "backend" && s.kind != "listen" {
			continue
		}
		for _, l := range s.lines {
			if l.words[0].val == "server" && len(l.words) >= 3 {
				found[key{l.line, l.words[2].val}] = l
			}
		}
	}
	var edits []edit
	done := map[int]bool{}
	for _, srv := range servers {
		l, ok := found[key{srv.Line, srv.Address}]
		if !ok {
			return "", fmt.Errorf("%s:%d: server %s %s not found (file changed since it was read?)", file, srv.Line, srv.Name, srv.Address)
		}
		if done[l.line] {
			continue
		}
		done[l.line] = true
		if mode == Remove {
			end := l.end
			if end < len(text) {
				end++ // its newline
			}
			edits = append(edits, edit{start: l.start, end: end})
			continue
		}
		if hapDown(l.vals()[3:]) {
			continue
		}
		last := l.words[len(l.words)-1]
		edits = append(edits, edit{start: last.end, end: last.end, repl: " disabled"})
	}
	return applyEdits(text, edits), nil
}

// describeHAProxy says what backends cfg has, for the message of a config fronting no
// apiserver.
func describeHAProxy(cfg NodeConfig) string {
	secs, err := parseHAProxy(cfg.Main, cfg.Files[cfg.Main])
	if err != nil {
		return "no backend found"
	}
	var bs []string
	for _, s := range secs {
		if s.kind == "backend" || s.kind == "listen" {
			bs = append(bs, fmt.Sprintf("%s %s at %s:%d", s.kind, s.name, cfg.Main, s.line))
		}
	}
	switch {
	case len(bs) == 0:
		return "no backend or listen section"
	case len(bs) > 3:
		bs = append(bs[:3], fmt.Sprintf("%d more", len(bs)-3))
	}
	return "its " + strings.Join(bs, ", ") + " list none of the apiservers"
}
