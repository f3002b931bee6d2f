package lb

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/inventory"
)

// MainConfigPath is the file nginx reads for `-p prefix -c config`: a relative -c is relative
// to the prefix.
func MainConfigPath(p inventory.Paths) string {
	if path.IsAbs(p.NginxConfig) || p.NginxPrefix == "" {
		return path.Clean(p.NginxConfig)
	}
	return path.Join(p.NginxPrefix, p.NginxConfig)
}

// Observe reads a node's nginx configuration (the main file and every include, glob patterns
// expanded on the host) and parses it with Parse. When the configuration names no listen for
// the apiserver proxy, Listen falls back to p.NginxListen.
func Observe(ctx context.Context, h machine.Host, p inventory.Paths, apiservers []string) (NodeConfig, error) {
	if p.NginxConfig == "" {
		return NodeConfig{Host: h.Name()}, fmt.Errorf("%s: no nginx config path in the inventory", h.Name())
	}
	main := MainConfigPath(p)
	confDir := path.Dir(main)
	files := map[string]string{}
	queue := []string{main}
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		if _, ok := files[f]; ok {
			continue
		}
		b, err := h.ReadFile(ctx, f)
		if err != nil {
			return NodeConfig{Host: h.Name()}, fmt.Errorf("%s: read nginx config %s: %w", h.Name(), f, err)
		}
		files[f] = string(b)
		stmts, err := parseStmts(f, files[f])
		if err != nil {
			return NodeConfig{Host: h.Name()}, fmt.Errorf("%s: %w", h.Name(), err)
		}
		for _, arg := range includeArgs(stmts) {
			p := IncludePath(confDir, arg)
			if !HasGlob(p) {
				queue = append(queue, p)
				continue
			}
			matched, err := hostGlob(ctx, h, p)
			if err != nil {
				return NodeConfig{Host: h.Name()}, fmt.Errorf("%s: expand include %s of %s: %w", h.Name(), p, f, err)
			}
			queue = append(queue, matched...)
		}
	}
	resolved, err := resolveNames(ctx, h, ServerNames(main, files), "upstream server", "nginx")
	if err != nil {
		return NodeConfig{Host: h.Name()}, err
	}
	cfg, err := ParseResolved(h.Name(), main, files, apiservers, resolved)
	if err != nil {
		return cfg, fmt.Errorf("%s: %w", h.Name(), err)
	}
	if cfg.Listen == "" {
		cfg.Listen = p.NginxListen
	}
	return cfg, nil
}

func includeArgs(stmts []*stmt) []string {
	var out []string
	for _, s := range stmts {
		if s.name.val == "include" && !s.hasBlock() && len(s.args) == 1 {
			out = append(out, s.args[0].val)
		}
		out = append(out, includeArgs(s.block)...)
	}
	return out
}

// hostGlob lists the files a pattern matches on the host, sorted as nginx's glob(3) sorts
// them; hidden files are not matched, as with nginx.
func hostGlob(ctx context.Context, h machine.Host, pattern string) ([]string, error) {
	cmd := fmt.Sprintf(`for f in %s; do [ -f "$f" ] && printf '%%s\n' "$f"; done; true`, globWord(pattern))
	res, err := h.Run(ctx, cmd)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(res.Stdout), "\n") {
		if l != "" && !strings.HasPrefix(path.Base(l), ".") {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out, nil
}

// globWord quotes every byte of a pattern for sh except the glob characters, so the shell
// expands the pattern and nothing else.
func globWord(p string) string {
	var b strings.Builder
	for _, c := range []byte(p) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '/', c == '.', c == '_', c == '-', c == '*', c == '?', c == '[', c == ']':
			b.WriteByte(c)
		default:
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String()
}

// resolveNames resolves the server names of a proxy's config where the proxy runs, as it
// does when it loads the config; nil when there are none. A name that resolves to nothing
// there is an error: the proxy could not have loaded this config.
func resolveNames(ctx context.Context, h machine.Host, names []string, what, proxy string) (map[string][]string, error) {
	var resolved map[string][]string
	for _, n := range names {
		addrs, err := machine.Resolve(ctx, h, n)
		if err != nil {
			return nil, fmt.Errorf("%s: resolve %s %s: %w", h.Name(), what, n, err)
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("%s: %s %s does not resolve there (getent ahosts): %s could not load this config; fix the name or /etc/hosts, or point %s_config at the config %s runs", h.Name(), what, n, proxy, proxy, proxy)
		}
		if resolved == nil {
			resolved = map[string][]string{}
		}
		resolved[n] = addrs
	}
	return resolved, nil
}

// ObserveHAProxy reads a node's haproxy config (Paths.HAProxyPaths), resolves its servers'
// host names there, and parses it with ParseHAProxy. A read error wraps the host's, so a
// missing file is fs.ErrNotExist. When no frontend binds for the apiservers' backend, Listen
// falls back to p.NginxListen, the layout's proxy address.
func ObserveHAProxy(ctx context.Context, h machine.Host, p inventory.Paths, apiservers []string) (NodeConfig, error) {
	file, _, _ := p.HAProxyPaths()
	b, err := h.ReadFile(ctx, file)
	if err != nil {
		return NodeConfig{Host: h.Name(), Kind: KindHAProxy}, fmt.Errorf("%s: read haproxy config %s: %w", h.Name(), file, err)
	}
	text := string(b)
	resolved, err := resolveNames(ctx, h, HAProxyServerNames(file, text), "haproxy server", "haproxy")
	if err != nil {
		return NodeConfig{Host: h.Name(), Kind: KindHAProxy}, err
	}
	cfg, err := ParseHAProxy(h.Name(), file, text, apiservers, resolved)
	if err != nil {
		return cfg, fmt.Errorf("%s: %w", h.Name(), err)
	}
	if cfg.Listen == "" {
		cfg.Listen = p.NginxListen
	}
	return cfg, nil
}
