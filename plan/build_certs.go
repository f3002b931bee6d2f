package plan

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// certificates plans re-signing every certificate that names a leaving address, once per
// certificate (the same etcd certificate is often copied to every master) and installed on
// every staying host that holds it.
func (b *builder) certificates() {
	type group struct {
		cert  Cert
		hosts []string
		paths []string
		// users are each host's own "unit --flag" uses: the same file may be etcd's serving
		// certificate on one master and only the apiserver's client certificate on another.
		users map[string][]string
	}
	groups := map[string]*group{}
	var order []string
	for _, c := range b.f.Certs {
		if b.leaving[c.Host] {
			continue
		}
		var drop []string
		for _, ip := range c.Info.IPAddresses {
			if slices.Contains(b.leaveIPs, ip) {
				drop = append(drop, ip)
			}
		}
		if len(drop) == 0 {
			continue
		}
		// One group per certificate and path: the same certificate kept under another name
		// has other users and another key path.
		key := c.Info.Serial + "\x00" + c.Path
		g, ok := groups[key]
		if !ok {
			g = &group{cert: c}
			groups[key] = g
			order = append(order, key)
		}
		g.hosts = append(g.hosts, c.Host)
		g.paths = append(g.paths, c.Host+":"+c.Path)
		if g.users == nil {
			g.users = map[string][]string{}
		}
		g.users[c.Host] = c.UsedBy
	}
	if len(order) == 0 {
		return
	}
	for _, key := range order {
		if c := groups[key].cert; c.ResignProblem != "" {
			b.refuse("cert-not-resignable", fmt.Sprintf("%s:%s names a leaving address but cannot be re-signed by the cluster CA: %s", c.Host, c.Path, c.ResignProblem),
				"fix the CA files or ca-config profile the inventory names (paths.ca_cert, ca_key, ca_config), or re-issue this certificate by hand before the shrink")
		}
	}
	if !b.f.CA.KeyPresent && len(b.f.CA.KeyOnLeaving) > 0 {
		return // refused in checkCAKey
	}
	if !b.f.CA.KeyPresent {
		b.refuse("ca-key-missing", fmt.Sprintf("certificates name removed addresses but the CA key %s is not on %s", b.f.CA.KeyPath, b.f.CA.Host),
			"put the CA key where the inventory says (paths.ca_key, on the CA host) or point the inventory at it")
		return
	}
	// Step IDs: the file's name, then the host and the name where names repeat, then the host,
	// the folder and the name where those repeat too (the env-file guides keep a server.pem in
	// both /opt/etcd/ssl and /opt/kubernetes/ssl).
	ids := map[string]string{}
	level := func(key string, n int) string {
		g := groups[key]
		switch n {
		case 0:
			return KindCertResign + "/" + certName(g.cert.Path)
		case 1:
			return KindCertResign + "/" + g.hosts[0] + "/" + certName(g.cert.Path)
		}
		dir := strings.ReplaceAll(strings.Trim(path.Dir(g.cert.Path), "/"), "/", "-")
		return KindCertResign + "/" + g.hosts[0] + "/" + dir + "/" + certName(g.cert.Path)
	}
	for _, key := range order {
		for n := 0; n <= 2; n++ {
			id := level(key, n)
			clash := 0
			for _, other := range order {
				if level(other, n) == id {
					clash++
				}
			}
			if clash == 1 || n == 2 {
				ids[key] = id
				break
			}
		}
	}
	for _, key := range order {
		g := groups[key]
		info := g.cert.Info
		serial := info.Serial
		before := append(slices.Clone(info.DNSNames), info.IPAddresses...)
		var after []string
		for _, h := range before {
			if !slices.Contains(b.leaveIPs, h) {
				after = append(after, h)
			}
		}
		id := ids[key]
		params := CertResignParams{Path: g.cert.Path, KeyPath: g.cert.KeyPath, Hosts: g.hosts,
			Serial: serial, Remove: intersect(before, b.leaveIPs), UsedBy: g.cert.UsedBy}
		for _, h := range g.hosts[1:] {
			if !slices.Equal(g.users[h], g.cert.UsedBy) {
				if params.UsedByOn == nil {
					params.UsedByOn = map[string][]string{}
				}
				params.UsedByOn[h] = g.users[h]
			}
		}
		b.add(Step{ID: id, Kind: KindCertResign, Host: g.hosts[0], Risk: Disruptive,
			Summary: fmt.Sprintf("re-sign %s (CN %s) without %s, install on %s, confirm it is served",
				path.Base(g.cert.Path), info.Subject.CommonName, strings.Join(intersect(before, b.leaveIPs), ", "), strings.Join(g.hosts, ", ")),
			Details: []string{"SANs before: " + strings.Join(before, ", "), "SANs after:  " + strings.Join(after, ", "),
				"used by: " + strings.Join(g.cert.UsedBy, ", "), "files: " + strings.Join(g.paths, ", ")},
			Params: EncodeParams(params),
			Relies: []string{"certs." + serial}})
	}
}

func certName(p string) string { return strings.TrimSuffix(path.Base(p), ".pem") }

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// CertResignParams: certs/resign, one certificate (serial) at one path on one or more hosts.
type CertResignParams struct {
	Path    string   `param:"path"`
	KeyPath string   `param:"key_path"`
	Hosts   []string `param:"hosts"`
	Serial  string   `param:"serial"`
	// Remove are the SANs taken out.
	Remove []string `param:"remove"`
	// UsedBy are the units that read the file on the first host; UsedByOn the others', where
	// they differ.
	UsedBy   []string            `param:"used_by"`
	UsedByOn map[string][]string `param:"used_by@"`
}

func (CertResignParams) ParamsKind() string { return KindCertResign }
