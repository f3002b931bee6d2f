package observe

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mastershrink/mastershrink/apiserver"
	"github.com/mastershrink/mastershrink/certs"
	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/nodes"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/unitfile"
)

// certFlags pair the certificate flags of etcd and the kube components with their key
// flags. unitfile gives every unit its flags wherever they are written (ExecStart, drop-ins,
// *_OPTS variables, etcd's ETCD_* variables and --config-file keys), so a certificate named
// as ETCD_PEER_CERT_FILE or under peer-transport-security.cert-file is --peer-cert-file here.
var certFlags = [][2]string{
	{"--cert-file", "--key-file"},
	{"--peer-cert-file", "--peer-key-file"},
	// etcd's client certificates for its own outgoing connections (3.5+).
	{"--client-cert-file", "--client-key-file"},
	{"--peer-client-cert-file", "--peer-client-key-file"},
	{"--tls-cert-file", "--tls-private-key-file"},
	{"--etcd-certfile", "--etcd-keyfile"},
	{"--kubelet-client-certificate", "--kubelet-client-key"},
	{"--proxy-client-cert-file", "--proxy-client-key-file"},
}

// Gather observes the cluster for a target. Hosts that cannot be reached are facts, not
// errors; an error means the facts could not be gathered at all (no etcd, no kubeconfig).
func Gather(ctx context.Context, c *Cluster, t plan.Target) (plan.Facts, error) {
	f := plan.Facts{
		Cluster: c.Inv.Cluster, Layout: c.Inv.Layout, ObservedAt: time.Now().UTC(),
		Units: map[string]plan.HostUnits{}, LB: map[string]lb.NodeConfig{},
		Leftovers: map[string][]string{}, APIServerReady: map[string]bool{}, ProxyMissing: map[string]plan.ProxyMissing{}, Keepalived: map[string][]string{},
	}
	errs := c.ConnectAll(ctx)
	for _, ih := range c.Inv.Hosts {
		h := plan.Host{Name: ih.Name, Address: ih.Address, Roles: ih.Roles, Paths: ih.Paths, Reachable: errs[ih.Name] == nil}
		if err := errs[ih.Name]; err != nil {
			h.Error = err.Error()
		}
		f.Hosts = append(f.Hosts, h)
	}

	cli, err := c.Etcd(ctx)
	if err != nil {
		return f, fmt.Errorf("observe etcd: %w", err)
	}
	if f.Etcd, err = cli.Observe(ctx); err != nil {
		return f, fmt.Errorf("observe etcd: %w", err)
	}

	var apiservers []string
	for _, ih := range c.Inv.HostsWithRole(inventory.RoleMaster) {
		apiservers = append(apiservers, net.JoinHostPort(ih.Address, strconv.Itoa(ih.Paths.APIServerPort)))
	}
	leaving := map[string]bool{}
	var leaveIPs []string
	for _, name := range t.Remove {
		leaving[name] = true
		if ih, ok := c.Inv.Host(name); ok {
			leaveIPs = append(leaveIPs, ih.Address)
		}
	}

	var mu sync.Mutex
	var problems []string
	note := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	var reachable []string
	for _, h := range f.Hosts {
		if h.Reachable {
			reachable = append(reachable, h.Name)
		}
	}
	var certRefs []certRef
	host.ForEach(ctx, reachable, c.opts.Concurrency, func(ctx context.Context, name string) error {
		ih, _ := c.Inv.Host(name)
		h, err := c.Host(ctx, name)
		if err != nil {
			return err
		}
		var unitDirs []string
		if ih.Has(inventory.RoleEtcd) || ih.Has(inventory.RoleMaster) {
			hu, refs, err := observeUnits(ctx, h, ih)
			unitDirs = fileDirs(hu)
			if err != nil {
				note("%s: %v", name, err)
			}
			mu.Lock()
			f.Units[name] = hu
			certRefs = append(certRefs, refs...)
			mu.Unlock()
		}
		// The reads every host gets, in one command (host.ReadAhead).
		var early []string
		if cmd := certListCmd(ih); cmd != "" {
			early = append(early, cmd)
		}
		scan := len(leaveIPs) > 0 && !leaving[name]
		if scan {
			early = append(early, leftoverScanCmd(ih, leaveIPs, unitDirs...))
		}
		h = host.ReadAhead(ctx, h, proxyFiles(ih), early)
		if refs := perHostCertRefs(ctx, h, ih); len(refs) > 0 {
			mu.Lock()
			certRefs = append(certRefs, refs...)
			mu.Unlock()
		}
		// A host without the node proxy (a bastion in the inventory), a wrong path, or
		// another proxy is missing: the plan tells them apart from what is there instead.
		cfg, missing, err := observeProxy(ctx, h, ih, apiservers)
		switch {
		case err != nil:
			note("%s: proxy config: %v", name, err)
		case missing != nil:
			mu.Lock()
			f.ProxyMissing[name] = *missing
			mu.Unlock()
		case cfg != nil:
			mu.Lock()
			f.LB[name] = *cfg
			mu.Unlock()
		}
		if leaving[name] {
			if vip := keepalived(ctx, h); len(vip) > 0 {
				mu.Lock()
				f.Keepalived[name] = vip
				mu.Unlock()
			}
		}
		if scan {
			if files := scanLeftovers(ctx, h, ih, leaveIPs, unitDirs...); len(files) > 0 {
				mu.Lock()
				f.Leftovers[name] = files
				mu.Unlock()
			}
		}
		return nil
	})
	if len(problems) > 0 {
		sort.Strings(problems)
		return f, fmt.Errorf("observe hosts: %s", strings.Join(problems, "; "))
	}
	gatherVRRP(ctx, c, reachable, &f)

	// Hosts answered in any order: sort, so the same cluster reads the same way every time.
	sort.Slice(certRefs, func(i, j int) bool {
		a, b := certRefs[i], certRefs[j]
		return a.host+"\x00"+a.path+"\x00"+a.usedBy < b.host+"\x00"+b.path+"\x00"+b.usedBy
	})
	f.Certs, f.UnreadableCerts = readCerts(ctx, c, certRefs)
	f.EtcdSelf = askEtcdSelves(ctx, c, cli, f)
	f.Resolved = resolveNames(ctx, c, f)
	f.LocalAddrs = localAddrs()
	f.CA = findCA(ctx, c, leaving)
	f.EtcdCA = findEtcdCA(ctx, c, leaving, f.CA)
	checkResignable(ctx, c, &f, leaving, leaveIPs)

	kube, kcfg, err := c.Kube()
	if err != nil {
		return f, err
	}
	f.KubeServer = kcfg.Host
	f.APIEndpoints = apiEndpoints(ctx, kube)
	drainNames := append(slices.Clone(t.Drain), t.Remove...)
	if f.Nodes, f.PDBs, err = nodes.Observe(ctx, kube, nodeNames(ctx, kube, c.Inv, drainNames)); err != nil {
		return f, fmt.Errorf("observe nodes: %w", err)
	}
	for _, ih := range c.Inv.HostsWithRole(inventory.RoleMaster) {
		f.APIServerReady[ih.Name] = c.ready(ctx, ih.Address, ih.Paths.APIServerPort) == nil
	}
	return f, nil
}

// nodeNames maps inventory host names to their Nodes, by name or address (nodes.NodeNames,
// the one matcher).
func nodeNames(ctx context.Context, kube kubernetes.Interface, inv *inventory.Inventory, hosts []string) []string {
	names, err := nodes.NodeNames(ctx, kube, hosts, func(host string) (string, bool) {
		ih, ok := inv.Host(host)
		if !ok {
			return "", false
		}
		return ih.Address, true
	})
	if err != nil {
		// The Nodes will be asked for again by name, and that error is the one to report.
		return hosts
	}
	return names
}

// ready asks one apiserver for /readyz.
func (c *Cluster) ready(ctx context.Context, address string, port int) error {
	cfg, err := c.APIServerConfig(address, port)
	if err != nil {
		return err
	}
	cfg.Timeout = 5 * time.Second
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	_, err = kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err
}

// otherProxyConfigs and otherProxyUnits are where another apiserver proxy shows itself: the
// haproxy and envoy of the binary-install guides, under their packaged names.
var (
	otherProxyConfigs = []string{"/etc/haproxy/haproxy.cfg", "/usr/local/etc/haproxy/haproxy.cfg", "/etc/envoy/envoy.yaml"}
	otherProxyUnits   = []string{"haproxy.service", "envoy.service"}
)

// otherProxies lists what looks like another proxy on h: its config files and its units
// that are active or enabled.
func otherProxies(ctx context.Context, h host.Host) []string {
	var out []string
	for _, p := range otherProxyConfigs {
		if _, err := h.ReadFile(ctx, p); err == nil {
			out = append(out, p)
		}
	}
	sd, err := h.Systemd(ctx)
	if err != nil {
		return out
	}
	defer sd.Close()
	for _, u := range otherProxyUnits {
		st, err := sd.Status(ctx, u)
		if err != nil || st.LoadState == "not-found" {
			continue
		}
		if st.ActiveState == "active" || st.UnitFileState == "enabled" {
			out = append(out, fmt.Sprintf("%s %s, %s", u, st.ActiveState, st.UnitFileState))
		}
	}
	return out
}

// keepalived lists the signs of keepalived on h: its config and its unit when active or
// enabled.
func keepalived(ctx context.Context, h host.Host) []string {
	var out []string
	if _, err := h.ReadFile(ctx, "/etc/keepalived/keepalived.conf"); err == nil {
		out = append(out, "/etc/keepalived/keepalived.conf")
	}
	sd, err := h.Systemd(ctx)
	if err != nil {
		return out
	}
	defer sd.Close()
	if st, err := sd.Status(ctx, "keepalived.service"); err == nil && st.LoadState != "not-found" &&
		(st.ActiveState == "active" || st.UnitFileState == "enabled") {
		out = append(out, fmt.Sprintf("keepalived.service %s, %s", st.ActiveState, st.UnitFileState))
	}
	return out
}

type certRef struct {
	host, path, key, usedBy string
}

func observeUnits(ctx context.Context, h host.Host, ih *inventory.Host) (plan.HostUnits, []certRef, error) {
	var hu plan.HostUnits
	var units []*unitfile.Unit
	if ih.Has(inventory.RoleEtcd) && ih.Paths.EtcdUnit != "" {
		sd, err := h.Systemd(ctx)
		if err != nil {
			return hu, nil, fmt.Errorf("systemd: %w", err)
		}
		hu.EtcdStatus, err = sd.Status(ctx, ih.Paths.EtcdUnit)
		sd.Close()
		if err != nil {
			return hu, nil, fmt.Errorf("unit %s: %w", ih.Paths.EtcdUnit, err)
		}
		if hu.EtcdStatus.LoadState != "not-found" {
			if hu.Etcd, err = unitfile.Read(ctx, h, ih.Paths.EtcdUnit); err != nil {
				return hu, nil, fmt.Errorf("unit %s: %w", ih.Paths.EtcdUnit, err)
			}
			units = append(units, hu.Etcd)
		}
	}
	// A unit the inventory names that is not running there (unknown to systemd, or a
	// distribution's packaged unit left inactive) may be the wrong one: ask what runs etcd.
	states := map[string]string{}
	if ih.Has(inventory.RoleEtcd) && ih.Paths.EtcdUnit != "" && hu.EtcdStatus.ActiveState != "active" {
		states["etcd_unit"] = unitState(hu.EtcdStatus)
	}
	if ih.Has(inventory.RoleMaster) {
		c, err := apiserver.Observe(ctx, h, ih.Paths)
		if err != nil {
			return hu, nil, err
		}
		hu.Components = &c
		for i, comp := range c.Each() {
			if comp.Present {
				units = append(units, comp.Unit)
			}
			if !comp.Active {
				states[unitFields[i+1].field] = unitState(comp.Status)
			}
		}
	}
	hu.Mismatches = discoverUnits(ctx, h, ih, states)
	var refs []certRef
	// etcdctl's client certificate in etcd's environment file (kubespray's admin-<host>.pem,
	// which holds every etcd address like the member certificates).
	if hu.Etcd != nil {
		if cert, ok := hu.Etcd.Env("ETCDCTL_CERT"); ok && cert != "" {
			key, _ := hu.Etcd.Env("ETCDCTL_KEY")
			refs = append(refs, certRef{host: ih.Name, path: cert, key: key, usedBy: strings.TrimSuffix(hu.Etcd.Name, ".service") + " ETCDCTL_CERT"})
		}
	}
	for _, u := range units {
		for _, pair := range certFlags {
			cf, ok := u.Flag(pair[0])
			if !ok || cf.Value == "" {
				continue
			}
			kf, _ := u.Flag(pair[1])
			refs = append(refs, certRef{host: ih.Name, path: cf.Value, key: kf.Value, usedBy: strings.TrimSuffix(u.Name, ".service") + " " + pair[0]})
		}
	}
	return hu, refs, nil
}

// readCerts reads each referenced certificate once per host. One that cannot be read or
// parsed is returned as a problem, with every reference to it, for the plan to warn about.
func readCerts(ctx context.Context, c *Cluster, refs []certRef) ([]plan.Cert, []plan.CertProblem) {
	byKey := map[string]*plan.Cert{}
	bad := map[string]*plan.CertProblem{}
	var order, badOrder []string
	for _, r := range refs {
		k := r.host + ":" + r.path
		// A certificate found by its name alone (kubespray's per-host files) has no use.
		var used []string
		if r.usedBy != "" {
			used = []string{r.usedBy}
		}
		if cert, ok := byKey[k]; ok {
			if r.usedBy != "" && !slices.Contains(cert.UsedBy, r.usedBy) {
				cert.UsedBy = append(cert.UsedBy, r.usedBy)
			}
			continue
		}
		if p, ok := bad[k]; ok {
			if r.usedBy != "" && !slices.Contains(p.UsedBy, r.usedBy) {
				p.UsedBy = append(p.UsedBy, r.usedBy)
			}
			continue
		}
		info, err := readCert(ctx, c, r.host, r.path)
		if err != nil {
			bad[k] = &plan.CertProblem{Host: r.host, Path: r.path, UsedBy: used, Error: err.Error()}
			badOrder = append(badOrder, k)
			continue
		}
		byKey[k] = &plan.Cert{Host: r.host, Path: r.path, KeyPath: r.key, UsedBy: used, Info: info}
		order = append(order, k)
	}
	var out []plan.Cert
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	var problems []plan.CertProblem
	for _, k := range badOrder {
		problems = append(problems, *bad[k])
	}
	return out, problems
}

// readCert reads and parses the first certificate of a PEM file on a host.
func readCert(ctx context.Context, c *Cluster, hostName, p string) (certs.Info, error) {
	if !path.IsAbs(p) {
		return certs.Info{}, fmt.Errorf("%q is not an absolute path (it is relative to the unit's working directory)", p)
	}
	h, err := c.Host(ctx, hostName)
	if err != nil {
		return certs.Info{}, err
	}
	data, err := h.ReadFile(ctx, p)
	if err != nil {
		return certs.Info{}, err
	}
	infos, _, err := certs.ParsePEM(data, p)
	if err != nil {
		return certs.Info{}, err
	}
	if len(infos) == 0 {
		return certs.Info{}, fmt.Errorf("%s holds no certificate", p)
	}
	return infos[0], nil
}

// findCA looks for the CA key on the staying masters, in inventory order.
func findCA(ctx context.Context, c *Cluster, leaving map[string]bool) plan.CA {
	var ca plan.CA
	var onLeaving []string
	for _, ih := range c.Inv.HostsWithRole(inventory.RoleMaster) {
		if leaving[ih.Name] {
			if h, err := c.Host(ctx, ih.Name); err == nil {
				if _, err := h.Stat(ctx, ih.Paths.CAKey); err == nil {
					onLeaving = append(onLeaving, ih.Name+":"+ih.Paths.CAKey)
				}
			}
			continue
		}
		h, err := c.Host(ctx, ih.Name)
		if err != nil {
			continue
		}
		cand := plan.CA{Host: ih.Name, CertPath: ih.Paths.CACert, KeyPath: ih.Paths.CAKey, ConfigPath: ih.Paths.CAConfig}
		_, kerr := h.Stat(ctx, ih.Paths.CAKey)
		cand.KeyPresent = kerr == nil
		if ih.Paths.CAConfig != "" {
			_, cerr := h.Stat(ctx, ih.Paths.CAConfig)
			cand.ConfigPresent = cerr == nil
		}
		if ca.Host == "" || (cand.KeyPresent && !ca.KeyPresent) {
			ca = cand
		}
	}
	ca.KeyOnLeaving = onLeaving
	return ca
}

// checkResignable loads the cluster CA, and etcd's own CA where it has one (their keys stay
// in memory, never in the facts), and checks every certificate that names a leaving address
// and stays against the CA that signed it: issuer, CA key, profile and usages, so a shrink
// that could not re-sign one is refused before anything changes.
func checkResignable(ctx context.Context, c *Cluster, f *plan.Facts, leaving map[string]bool, leaveIPs []string) {
	var idx []int
	for i, cert := range f.Certs {
		if !leaving[cert.Host] && slices.ContainsFunc(cert.Info.IPAddresses, func(ip string) bool { return slices.Contains(leaveIPs, ip) }) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return
	}
	problem := func(err error) string {
		s := err.Error()
		if len(s) > 400 {
			s = s[:400] + "..."
		}
		return s
	}
	load := func(ca plan.CA) (certs.CA, error) {
		h, err := c.Host(ctx, ca.Host)
		if err != nil {
			return certs.CA{}, err
		}
		return certs.LoadCAFrom(ctx, h, ca.CertPath, ca.KeyPath, ca.ConfigPath)
	}
	var clusterCA, etcdCA certs.CA
	var clusterErr, etcdErr error
	if f.CA.KeyPresent {
		clusterCA, clusterErr = load(f.CA)
	}
	// Which CA signed a certificate is told by its signature, from etcd's CA certificate
	// alone: one etcd's CA signed when its key is missing is the planner's refusal.
	var etcdCACert *x509.Certificate
	if f.EtcdCA != nil {
		if h, err := c.Host(ctx, f.EtcdCA.Host); err == nil {
			if data, err := h.ReadFile(ctx, f.EtcdCA.CertPath); err == nil {
				etcdCACert = firstCert(data)
			}
		}
		if f.EtcdCA.KeyPresent {
			etcdCA, etcdErr = load(*f.EtcdCA)
		}
	}
	for _, i := range idx {
		cert := &f.Certs[i]
		h, herr := c.Host(ctx, cert.Host)
		if herr != nil {
			cert.ResignProblem = problem(herr)
			continue
		}
		data, rerr := h.ReadFile(ctx, cert.Path)
		if rerr != nil {
			cert.ResignProblem = problem(rerr)
			continue
		}
		ca, err, keyPresent := clusterCA, clusterErr, f.CA.KeyPresent
		if parsed := firstCert(data); etcdCACert != nil && parsed != nil && parsed.CheckSignatureFrom(etcdCACert) == nil {
			cert.SignedBy = "etcd"
			ca, err, keyPresent = etcdCA, etcdErr, f.EtcdCA.KeyPresent
		}
		if !keyPresent {
			continue
		}
		if err != nil {
			cert.ResignProblem = problem(err)
			continue
		}
		if cerr := certs.CheckResignablePEM(data, cert.Path, ca, ""); cerr != nil {
			cert.ResignProblem = problem(cerr)
		}
	}
}

// localAddrs are the addresses of this machine's interfaces.
func localAddrs() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() {
			out = append(out, ipn.IP.String())
		}
	}
	sort.Strings(out)
	return out
}

// fileDirs are the folders of every file the host's control-plane units read their flags
// from (EnvironmentFiles such as /opt/etcd/cfg/etcd.conf, etcd's config file), sorted.
func fileDirs(hu plan.HostUnits) []string {
	var units []*unitfile.Unit
	if hu.Etcd != nil {
		units = append(units, hu.Etcd)
	}
	if hu.Components != nil {
		for _, c := range hu.Components.Each() {
			if c.Unit != nil {
				units = append(units, c.Unit)
			}
		}
	}
	var dirs []string
	for _, u := range units {
		for p := range u.Files {
			if d := path.Dir(p); !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	sort.Strings(dirs)
	return dirs
}

// scanLeftovers lists configuration files on a staying host that still name a leaving
// address, so the plan can warn about what it will not rewrite: the usual folders, the
// proxy's and the PKI's, and extra (the folders the units read their flags from).
func scanLeftovers(ctx context.Context, h host.Host, ih *inventory.Host, ips []string, extra ...string) []string {
	res, _ := h.Run(ctx, leftoverScanCmd(ih, ips, extra...))
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
		if line != "" && !slices.Contains(out, line) {
			out = append(out, line)
		}
	}
	sort.Strings(out)
	return out
}

// leftoverScanCmd is scanLeftovers' search of the host's config folders for the addresses.
func leftoverScanCmd(ih *inventory.Host, ips []string, extra ...string) string {
	dirs := []string{"/etc/kubernetes", "/etc/systemd/system", "/etc/etcd"}
	for _, d := range extra {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	hapConfig, _, _ := ih.Paths.HAProxyPaths()
	for _, p := range []string{ih.Paths.NginxConfig, hapConfig, ih.Paths.PKIDir} {
		if p != "" && !slices.Contains(dirs, path.Dir(p)) {
			dirs = append(dirs, path.Dir(p))
		}
	}
	cmd := "grep -rlsIE --exclude='*.bak-*'"
	for _, ip := range ips {
		// Boundaries keep 10.0.0.1 from matching 10.0.0.12.
		cmd += " -e " + machine.Quote(`(^|[^0-9.])`+strings.ReplaceAll(ip, ".", `\.`)+`([^0-9]|$)`)
	}
	for _, d := range dirs {
		cmd += " " + machine.Quote(d)
	}
	return cmd + " 2>/dev/null || true"
}

// askEtcdSelves asks the etcd of every reachable etcd host, through that host, which member it
// is: the one identity that neither member names nor the inventory can get wrong.
func askEtcdSelves(ctx context.Context, c *Cluster, cli *etcd.Client, f plan.Facts) map[string]plan.EtcdSelf {
	out := map[string]plan.EtcdSelf{}
	var mu sync.Mutex
	var names []string
	for _, h := range f.Hosts {
		if h.Reachable && h.Has(inventory.RoleEtcd) {
			names = append(names, h.Name)
		}
	}
	host.ForEach(ctx, names, c.opts.Concurrency, func(ctx context.Context, name string) error {
		ih, _ := c.Inv.Host(name)
		self := plan.EtcdSelf{Endpoint: SelfEndpoint(ih, f.Units[name].Etcd)}
		h, err := c.Host(ctx, name)
		if err == nil {
			var s etcd.Self
			if s, err = cli.AskSelf(ctx, self.Endpoint, h.DialContext); err == nil {
				self.MemberID, self.ClusterID = etcd.FormatID(s.MemberID), etcd.FormatID(s.ClusterID)
			}
		}
		if err != nil {
			self.Error = err.Error()
		}
		mu.Lock()
		out[name] = self
		mu.Unlock()
		return nil
	})
	return out
}

// SelfEndpoint is where a host's own etcd answers: the first URL it advertises to clients,
// as its unit says, else its inventory address and client port.
func SelfEndpoint(ih *inventory.Host, u *unitfile.Unit) string {
	if u != nil {
		for _, flag := range []string{"--advertise-client-urls", "--listen-client-urls"} {
			if fl, ok := u.Flag(flag); ok {
				for _, v := range strings.Split(fl.Value, ",") {
					if v = strings.TrimSpace(v); v != "" && !strings.Contains(v, "127.0.0.1") && !strings.Contains(v, "localhost") {
						return v
					}
				}
			}
		}
	}
	port := ih.Paths.EtcdClientPort
	if port == 0 {
		port = 2379
	}
	return "https://" + net.JoinHostPort(ih.Address, strconv.Itoa(port))
}

// resolveNames resolves the host names of etcd peer URLs and inventory addresses on the first
// reachable etcd host that knows them, the way etcd itself resolves them.
func resolveNames(ctx context.Context, c *Cluster, f plan.Facts) map[string][]string {
	var names []string
	add := func(n string) {
		if n != "" && net.ParseIP(n) == nil && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, m := range f.Etcd.Members {
		for _, u := range m.PeerURLs {
			add(plan.PeerHost(u))
		}
	}
	for _, h := range f.Hosts {
		add(h.Address)
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	out := map[string][]string{}
	for _, h := range f.Hosts {
		if !h.Reachable || !h.Has(inventory.RoleEtcd) {
			continue
		}
		hh, err := c.Host(ctx, h.Name)
		if err != nil {
			continue
		}
		for _, n := range names {
			if _, done := out[n]; done {
				continue
			}
			addrs, err := machine.Resolve(ctx, hh, n)
			if err != nil {
				continue
			}
			if len(addrs) > 0 {
				out[n] = addrs
			}
		}
		if len(out) == len(names) {
			break
		}
	}
	return out
}

// apiEndpoints are the addresses of the apiservers the kubeconfig's API knows (the kubernetes
// EndpointSlice), sorted: the planner checks they are this inventory's masters, so a
// KUBECONFIG for another cluster is not taken for this one.
func apiEndpoints(ctx context.Context, kube kubernetes.Interface) []string {
	list, err := kube.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=kubernetes"})
	if err != nil {
		return nil
	}
	var out []string
	for _, es := range list.Items {
		for _, ep := range es.Endpoints {
			for _, a := range ep.Addresses {
				if !slices.Contains(out, a) {
					out = append(out, a)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}
