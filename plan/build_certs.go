package plan

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"sort"
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
	// A leaving host's own per-host certificates on a staying host (kubespray syncs every
	// host's to every etcd host) are not re-signed for a host that is gone: they are reported.
	stale := map[string][]string{}
	for _, c := range b.f.Certs {
		if b.leaving[c.Host] {
			continue
		}
		if owner := perHostOwner(c.Path); owner != "" && b.leaving[owner] && len(c.UsedBy) == 0 {
			stale[c.Host] = append(stale[c.Host], c.Path)
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
	b.staleCerts(stale)
	if len(order) == 0 {
		return
	}
	byCluster, byEtcd := false, false
	for _, key := range order {
		c := groups[key].cert
		if c.SignedBy == "etcd" {
			byEtcd = true
		} else {
			byCluster = true
		}
		if c.ResignProblem == "" {
			continue
		}
		if c.SignedBy == "etcd" {
			b.refuse("cert-not-resignable", fmt.Sprintf("%s:%s names a leaving address but cannot be re-signed by etcd's CA: %s", c.Host, c.Path, c.ResignProblem),
				"fix etcd's CA files (paths.etcd_ca_cert, with its key beside it), or re-issue this certificate by hand before the shrink")
			continue
		}
		b.refuse("cert-not-resignable", fmt.Sprintf("%s:%s names a leaving address but cannot be re-signed by the cluster CA: %s", c.Host, c.Path, c.ResignProblem),
			"fix the CA files or ca-config profile the inventory names (paths.ca_cert, ca_key, ca_config), or re-issue this certificate by hand before the shrink")
	}
	if byEtcd && !b.etcdCAKey() {
		return
	}
	if byCluster && !b.f.CA.KeyPresent && len(b.f.CA.KeyOnLeaving) > 0 {
		return // refused in checkCAKey
	}
	if byCluster && !b.f.CA.KeyPresent {
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
	// A certificate re-signed for naming a leaving address loses the leaving hosts' names
	// too (kubespray's name every etcd host by its inventory name).
	gone := slices.Clone(b.leaveIPs)
	for _, h := range b.f.Hosts {
		if b.leaving[h.Name] {
			gone = append(gone, h.Name)
		}
	}
	for _, key := range order {
		g := groups[key]
		info := g.cert.Info
		serial := info.Serial
		before := append(slices.Clone(info.DNSNames), info.IPAddresses...)
		var after []string
		for _, h := range before {
			if !slices.Contains(gone, h) {
				after = append(after, h)
			}
		}
		id := ids[key]
		params := CertResignParams{Path: g.cert.Path, KeyPath: g.cert.KeyPath, Hosts: g.hosts,
			Serial: serial, Remove: intersect(before, gone), UsedBy: g.cert.UsedBy}
		usedBy := strings.Join(g.cert.UsedBy, ", ")
		if usedBy == "" {
			usedBy = "no unit on " + g.hosts[0] + " (a copy kept for other hosts)"
		}
		details := []string{"SANs before: " + strings.Join(before, ", "), "SANs after:  " + strings.Join(after, ", "),
			"used by: " + usedBy, "files: " + strings.Join(g.paths, ", ")}
		if g.cert.SignedBy == "etcd" {
			ca := b.f.EtcdCA
			params.CAHost, params.CACert, params.CAKey = ca.Host, ca.CertPath, ca.KeyPath
			details = append(details, "signed by etcd's own CA: "+ca.Host+":"+ca.CertPath)
		}
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
				path.Base(g.cert.Path), info.Subject.CommonName, strings.Join(intersect(before, gone), ", "), strings.Join(g.hosts, ", ")),
			Details: details,
			Params:  EncodeParams(params),
			Relies:  []string{"certs." + serial}})
	}
}

// etcdCAKey refuses when certificates etcd's own CA signed must be re-signed and its key is
// not on a staying host; it says whether the plan can go on.
func (b *builder) etcdCAKey() bool {
	ca := b.f.EtcdCA
	if ca == nil {
		b.refuse("etcd-ca-missing", "certificates signed by etcd's own CA name removed addresses, but etcd's CA was not found on a staying etcd host",
			"point paths.etcd_ca_cert at etcd's CA certificate, with its key beside it (ca-key.pem next to ca.pem)")
		return false
	}
	if ca.KeyPresent {
		return true
	}
	if len(ca.KeyOnLeaving) > 0 {
		b.refuse("etcd-ca-key-only-on-leaving", fmt.Sprintf("etcd's CA key is only on leaving hosts (%s): retiring them would lose the last copy", strings.Join(ca.KeyOnLeaving, ", ")),
			fmt.Sprintf("copy it (0600) to %s:%s first, then plan again", ca.Host, ca.KeyPath))
		return false
	}
	b.refuse("etcd-ca-key-missing", fmt.Sprintf("certificates signed by etcd's own CA (%s:%s) name removed addresses, but its key %s is not there", ca.Host, ca.CertPath, ca.KeyPath),
		"put etcd's CA key beside its certificate (ca-key.pem next to ca.pem, where kubespray's make-ssl-etcd.sh leaves it on every etcd host), or re-issue these certificates by hand before the shrink")
	return false
}

// perHostCertRE matches kubespray's per-host certificates, naming their host.
var perHostCertRE = regexp.MustCompile(`^(?:member|admin|node)-(.+)\.pem$`)

// perHostOwner is the host a per-host certificate is named after (member-m2.pem: m2), or "".
func perHostOwner(p string) string {
	m := perHostCertRE.FindStringSubmatch(path.Base(p))
	if m == nil || strings.HasSuffix(m[1], "-key") {
		return ""
	}
	return m[1]
}

// staleCerts warns, per staying host, about the per-host certificates of leaving hosts it
// keeps: they name the removed addresses, and their keys stay valid for etcd's CA.
func (b *builder) staleCerts(stale map[string][]string) {
	for _, h := range slices.Sorted(maps.Keys(stale)) {
		files := stale[h]
		sort.Strings(files)
		var keys []string
		for _, f := range files {
			keys = append(keys, strings.TrimSuffix(f, ".pem")+"-key.pem")
		}
		b.warn("%s keeps the certificates of leaving hosts that kubespray copies to every etcd host (%s): this plan leaves them; they still name the removed addresses and their keys stay valid for etcd's CA, so remove them and their keys once the shrink is done: rm %s",
			h, strings.Join(files, ", "), strings.Join(append(slices.Clone(files), keys...), " "))
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
	// CAHost, CACert and CAKey are the CA that re-signs it where that is not the cluster CA
	// of the facts (etcd's own CA).
	CAHost string `param:"ca_host,omitempty"`
	CACert string `param:"ca_cert,omitempty"`
	CAKey  string `param:"ca_key,omitempty"`
}

func (CertResignParams) ParamsKind() string { return KindCertResign }

// usedByText names a certificate's "unit --flag" uses for a reader; kubespray's per-host
// copies have none.
func usedByText(usedBy []string) string {
	if len(usedBy) == 0 {
		return "no unit: a per-host copy"
	}
	return strings.Join(usedBy, ", ")
}
