package apiserverfacts

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/unitfile"
)

// ErrNoEtcdServers means a surviving apiserver would be left without an etcd endpoint.
var ErrNoEtcdServers = errors.New("no etcd server left")

// Finding is a place in a survivor's configuration that names something the shrink touches.
type Finding struct {
	Host      string `json:"host"`
	Component string `json:"component"`
	File      string `json:"file"`
	Line      int    `json:"line,omitempty"`
	// Flag is the flag ("--master") or, for a kubeconfig, "server".
	Flag    string `json:"flag"`
	Value   string `json:"value"`
	Address string `json:"address,omitempty"`
	// Rewritten is true when the planned changes fix it; false means the operator must look.
	Rewritten bool   `json:"rewritten"`
	Note      string `json:"note"`
}

// Rewrite is the planned change of one surviving master's control-plane configuration.
type Rewrite struct {
	Changes  []machine.FileChange `json:"changes"`
	Findings []Finding            `json:"findings,omitempty"`
	// Restart lists the components (KubeAPIServer, ...) whose files change, in that order.
	Restart []string `json:"restart,omitempty"`
}

// PlanRewrite plans the file changes on one surviving master: --etcd-servers to the
// surviving members, --apiserver-count where set, and any kcm/scheduler --master or
// kubeconfig server naming a removed master; with what it found: flags and kubeconfigs naming
// a removed address (rewritten or left for the operator) and which components must restart.
// removedAddrs holds every address and name of the leaving masters and etcd members.
func PlanRewrite(c Components, hostName string, survivingEtcdClientURLs []string, survivingMasters int, removedAddrs []string) (Rewrite, error) {
	p := planner{host: hostName, orig: map[string]string{}, planned: map[string]string{}, removed: lowerSet(removedAddrs), kubeconfigs: map[string]bool{}}
	own := c.APIServer.OwnAddress()

	if a := c.APIServer; a.Present {
		values := map[string]string{}
		if _, ok := a.Unit.Flag("--etcd-servers"); !ok {
			return Rewrite{}, fmt.Errorf("kube-apiserver on %s: --etcd-servers not set: %w", hostName, ErrNoEtcdServers)
		}
		servers, findings := survivingEtcdServers(a.Flags.EtcdServers, survivingEtcdClientURLs, p.removed)
		for i := range findings {
			findings[i].Host, findings[i].Component = hostName, KubeAPIServer
			fl, _ := a.Unit.Flag("--etcd-servers")
			findings[i].File, findings[i].Line = fl.File, fl.Line
		}
		p.findings = append(p.findings, findings...)
		if len(servers) == 0 {
			return Rewrite{}, fmt.Errorf("kube-apiserver on %s: --etcd-servers=%s: %w", hostName, strings.Join(a.Flags.EtcdServers, ","), ErrNoEtcdServers)
		}
		values["--etcd-servers"] = strings.Join(servers, ",")
		if _, ok := a.Unit.Flag("--apiserver-count"); ok && survivingMasters > 0 {
			values["--apiserver-count"] = strconv.Itoa(survivingMasters)
		}
		if err := p.setFlags(a, values); err != nil {
			return Rewrite{}, err
		}
		p.scanFlags(a, map[string]bool{"--etcd-servers": true, "--apiserver-count": true})
	}

	for _, comp := range []Component{c.ControllerManager, c.Scheduler} {
		if !comp.Present {
			continue
		}
		handled := map[string]bool{}
		if m := comp.Flags.Master; m != "" && p.removed[strings.ToLower(serverHost(m))] {
			handled["--master"] = true
			fl, _ := comp.Unit.Flag("--master")
			f := Finding{Host: hostName, Component: comp.Name, File: fl.File, Line: fl.Line, Flag: "--master", Value: m, Address: serverHost(m)}
			if nu, ok := replaceURLHost(m, own); ok {
				if err := p.setFlags(comp, map[string]string{"--master": nu}); err != nil {
					return Rewrite{}, err
				}
				f.Rewritten, f.Note = true, "points at this master's own apiserver "+nu
			} else {
				f.Note = "this master's own apiserver address is unknown; edit by hand"
			}
			p.findings = append(p.findings, f)
		}
		p.scanFlags(comp, handled)
		for _, kc := range comp.Kubeconfigs {
			if err := p.kubeconfig(comp, kc, own); err != nil {
				return Rewrite{}, err
			}
		}
	}

	r := Rewrite{Findings: p.findings}
	for _, path := range p.order {
		if p.planned[path] != p.orig[path] {
			r.Changes = append(r.Changes, machine.FileChange{Host: hostName, Path: path, Before: p.orig[path], After: p.planned[path]})
		}
	}
	for _, comp := range c.Each() {
		for _, ch := range r.Changes {
			if comp.Uses(ch.Path) {
				r.Restart = append(r.Restart, comp.Name)
				break
			}
		}
	}
	return r, nil
}

type planner struct {
	host     string
	orig     map[string]string
	planned  map[string]string
	order    []string
	removed  map[string]bool
	findings []Finding
	// kubeconfigs already planned, by path.
	kubeconfigs map[string]bool
}

func (p *planner) record(path, before, after string) {
	if _, ok := p.orig[path]; !ok {
		p.orig[path] = before
		p.order = append(p.order, path)
	}
	p.planned[path] = after
}

// setFlags edits a unit on top of what is already planned (an EnvironmentFile may be shared
// by several units).
func (p *planner) setFlags(c Component, values map[string]string) error {
	u := c.Unit
	over := map[string]string{}
	for path := range u.Files {
		if v, ok := p.planned[path]; ok {
			over[path] = v
		}
	}
	if len(over) > 0 {
		var err error
		if u, err = u.With(over); err != nil {
			return fmt.Errorf("%s on %s: %w", c.UnitName, p.host, err)
		}
	}
	changes, err := u.SetFlags(p.host, values)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", c.UnitName, p.host, err)
	}
	for _, ch := range changes {
		before := ch.Before
		if o, ok := p.orig[ch.Path]; ok {
			before = o
		}
		p.record(ch.Path, before, ch.After)
	}
	return nil
}

// scanFlags reports every other flag naming a removed address.
func (p *planner) scanFlags(c Component, skip map[string]bool) {
	for _, f := range c.Unit.Flags {
		if skip[f.Name] {
			continue
		}
		for _, a := range slices.Sorted(maps.Keys(p.removed)) {
			if mentions(f.Value, a) {
				p.findings = append(p.findings, Finding{Host: p.host, Component: c.Name, File: f.File, Line: f.Line,
					Flag: f.Name, Value: f.Value, Address: a, Note: "names a removed host; not changed, edit by hand if it matters"})
				break
			}
		}
	}
}

// kubeconfig points a server naming a removed master at this master's own apiserver.
func (p *planner) kubeconfig(c Component, kc Kubeconfig, own string) error {
	// A kubeconfig shared by the controller-manager and the scheduler is edited once.
	if p.kubeconfigs[kc.Path] {
		return nil
	}
	p.kubeconfigs[kc.Path] = true
	content := kc.Content
	for _, s := range kc.Servers {
		h := strings.ToLower(serverHost(s.Server))
		if !p.removed[h] {
			continue
		}
		f := Finding{Host: p.host, Component: c.Name, File: kc.Path, Line: s.Line, Flag: "server", Value: s.Server, Address: h}
		nu, ok := replaceURLHost(s.Server, own)
		if !ok {
			f.Note = "this master's own apiserver address is unknown; edit by hand"
			p.findings = append(p.findings, f)
			continue
		}
		edited, err := replaceAt(content, s.Line, s.Column, s.Server, nu)
		if err != nil {
			return fmt.Errorf("kubeconfig %s on %s: %w", kc.Path, p.host, err)
		}
		servers, err := KubeconfigServers(edited)
		if err != nil || !hasServer(servers, s.Cluster, nu) {
			return fmt.Errorf("kubeconfig %s on %s: the edited file does not read back server %s (%v)", kc.Path, p.host, nu, err)
		}
		content = edited
		f.Rewritten, f.Note = true, "points at this master's own apiserver "+nu
		p.findings = append(p.findings, f)
	}
	if content != kc.Content {
		p.record(kc.Path, kc.Content, content)
	}
	return nil
}

func hasServer(ss []KubeconfigServer, cluster, server string) bool {
	for _, s := range ss {
		if s.Cluster == cluster && s.Server == server {
			return true
		}
	}
	return false
}

// replaceAt replaces old with nu at or after the 1-based line and column of a YAML scalar,
// on that line only, so the rest of the file keeps its bytes.
func replaceAt(content string, line, col int, old, nu string) (string, error) {
	start := 0
	for i := 1; i < line; i++ {
		j := strings.IndexByte(content[start:], '\n')
		if j < 0 {
			return "", fmt.Errorf("line %d is past the end", line)
		}
		start += j + 1
	}
	end := strings.IndexByte(content[start:], '\n')
	if end < 0 {
		end = len(content)
	} else {
		end += start
	}
	from := start + col - 1
	if from > end {
		return "", fmt.Errorf("column %d is past the end of line %d", col, line)
	}
	k := strings.Index(content[from:end], old)
	if k < 0 {
		return "", fmt.Errorf("line %d does not hold %q as written (escaped or folded?)", line, old)
	}
	if err := unitfile.SafeValue(nu); err != nil {
		return "", err
	}
	at := from + k
	return content[:at] + nu + content[at+len(old):], nil
}

// replaceURLHost returns the URL with its host replaced by addr, port and scheme kept.
func replaceURLHost(s, addr string) (string, bool) {
	if addr == "" {
		return "", false
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", false
	}
	if port := u.Port(); port != "" {
		u.Host = net.JoinHostPort(addr, port)
	} else if strings.Contains(addr, ":") {
		u.Host = "[" + addr + "]"
	} else {
		u.Host = addr
	}
	return u.String(), true
}

// survivingEtcdServers keeps the current entries that do not name a removed host, in their
// order and scheme, then appends surviving members the list did not name.
func survivingEtcdServers(current, surviving []string, removed map[string]bool) ([]string, []Finding) {
	survHost := map[string]bool{}
	for _, s := range surviving {
		survHost[strings.ToLower(serverHost(s))] = true
	}
	var out []string
	var findings []Finding
	have := map[string]bool{}
	for _, s := range current {
		h := strings.ToLower(serverHost(s))
		if removed[h] {
			continue
		}
		out = append(out, s)
		have[hostPort(s)] = true
		if !survHost[h] && !isLoopback(h) {
			findings = append(findings, Finding{Flag: "--etcd-servers", Value: s, Address: h,
				Note: "kept: names neither a removed nor a known surviving etcd member"})
		}
	}
	for _, s := range surviving {
		if !have[hostPort(s)] {
			out = append(out, s)
			have[hostPort(s)] = true
		}
	}
	return out, findings
}

func hostPort(s string) string {
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		return strings.ToLower(u.Host)
	}
	return strings.ToLower(s)
}

func isLoopback(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// mentions reports whether value names addr as a whole host (10.0.0.1 is not in 10.0.0.11).
func mentions(value, addr string) bool {
	if addr == "" {
		return false
	}
	v, a := strings.ToLower(value), strings.ToLower(addr)
	for i := 0; ; {
		k := strings.Index(v[i:], a)
		if k < 0 {
			return false
		}
		at := i + k
		end := at + len(a)
		if (at == 0 || !hostChar(v[at-1])) && (end == len(v) || !hostChar(v[end])) {
			return true
		}
		i = at + 1
	}
}

func hostChar(b byte) bool {
	return b == '.' || b == '-' || b == '_' || (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z')
}

func lowerSet(ss []string) map[string]bool {
	m := map[string]bool{}
	for _, s := range ss {
		if s = strings.TrimSpace(strings.ToLower(s)); s != "" {
			m[strings.Trim(s, "[]")] = true
		}
	}
	return m
}
