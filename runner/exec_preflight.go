package runner

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/mastershrink/mastershrink/apiserver"
	"github.com/mastershrink/mastershrink/certs"
	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/plan"
)

var (
	_ = register(plan.KindPreflight, untyped(func(r *run, _ plan.Step) executor {
		return executor{phase: "checking the cluster", apply: r.preflight}
	}))
)

// ---- preflight

func (r *run) preflight(ctx context.Context) (outcome, error) {
	var problems []string
	for _, fh := range r.p.Facts.Hosts {
		if r.offline(fh.Name) {
			continue
		}
		if _, err := r.c.Host(ctx, fh.Name); err != nil {
			problems = append(problems, fmt.Sprintf("host %s unreachable: %v", fh.Name, err))
		}
	}
	cli, err := r.c.Etcd(ctx)
	if err != nil {
		return outcome{}, fmt.Errorf("%w: %v", ErrPreflight, err)
	}
	f, err := cli.Observe(ctx)
	if err != nil {
		return outcome{}, fmt.Errorf("%w: %v", ErrPreflight, err)
	}
	if f.LeaderID == 0 {
		problems = append(problems, "etcd has no leader")
	}
	for _, m := range f.Members {
		if !m.Healthy && !r.offline(r.memberHost(m)) {
			problems = append(problems, fmt.Sprintf("etcd member %s (%x) unhealthy: %s", m.Name, m.ID, m.Error))
		}
	}
	if slices.ContainsFunc(r.p.Steps, func(s plan.Step) bool { return s.Kind == plan.KindCertResign }) {
		problems = append(problems, r.canResign(ctx)...)
	}
	if err := etcd.CheckSnapshotDir(r.opts.SnapshotDir); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return outcome{}, fmt.Errorf("%w: %s", ErrPreflight, strings.Join(problems, "; "))
	}
	// A survivor's apiserver may be mid-restart after a crash: wait for it, within its budget.
	var ready []string
	for _, ih := range r.survivingMasters() {
		h, probe, deadline, err := r.readyProbe(ctx, ih.Name)
		if err != nil {
			return outcome{}, fmt.Errorf("%w: %v", ErrPreflight, err)
		}
		if err := apiserver.WaitReady(ctx, h, probe, deadline, r.detail(), "kube-apiserver on "+ih.Name); err != nil {
			return outcome{}, fmt.Errorf("%w: %v", ErrPreflight, err)
		}
		ready = append(ready, ih.Name)
	}
	health := etcdHealthNote(f.Members, func(m etcd.Member) (string, bool) {
		h := r.memberHost(m)
		return h, r.offline(h)
	})
	return outcome{note: fmt.Sprintf("hosts reachable: %d, %s, kube-apiserver ready on %s",
		len(r.p.Facts.Hosts)-len(r.p.Target.Offline), health, strings.Join(ready, ", "))}, nil
}

// canResign loads the CA as the certificate steps will, and checks each certificate they
// re-sign against it (issuer, CA key, profile, usages), before any irreversible step: a CA
// that cannot sign would otherwise stop the run past the point of no return.
func (r *run) canResign(ctx context.Context) []string {
	loaded := map[string]certs.CA{}
	var problems []string
	for _, st := range r.p.Steps {
		cp, err := plan.DecodeParams[plan.CertResignParams](st)
		if err != nil || len(cp.Hosts) == 0 {
			continue
		}
		first := cp.Hosts[0]
		ch, _, err := r.host(ctx, first)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		data, err := ch.ReadFile(ctx, cp.Path)
		if err != nil {
			problems = append(problems, fmt.Sprintf("read %s:%s: %v", first, cp.Path, err))
			continue
		}
		if ok, _ := lacksAll(data, cp.Path, cp.Remove); ok {
			continue // re-signed by an earlier run of this plan
		}
		ref := r.stepCA(cp)
		key := ref.Host + ":" + ref.CertPath
		ca, ok := loaded[key]
		if !ok {
			if ca, err = r.loadCA(ctx, ref); err != nil {
				problems = append(problems, err.Error())
				continue
			}
			loaded[key] = ca
		}
		if err := resignInMemory(ctx, ch, cp, data, ca); err != nil {
			problems = append(problems, fmt.Sprintf("step %s: %v", st.ID, err))
		}
	}
	return problems
}

// resignInMemory signs the step's new certificate exactly as the step will, and throws it
// away: whatever would stop the step past the point of no return (issuer, key, profile,
// usages, validity, the key file) stops the run here, before anything irreversible.
func resignInMemory(ctx context.Context, h host.Host, p plan.CertResignParams, certPEM []byte, ca certs.CA) error {
	keyPEM, err := h.ReadFile(ctx, p.KeyPath)
	if err != nil {
		return fmt.Errorf("read %s:%s: %w", h.Name(), p.KeyPath, err)
	}
	_, parsed, err := certs.ParsePEM(certPEM, p.Path)
	if err != nil {
		return err
	}
	_, err = certs.Resign(parsed[0], ca, certs.ResignOptions{RemoveHosts: p.Remove, ReuseKey: true, ExistingKeyPEM: keyPEM})
	return err
}

// lacksAll says whether the first certificate of data names none of the hosts (addresses,
// names).
func lacksAll(data []byte, path string, hosts []string) (bool, error) {
	infos, _, err := certs.ParsePEM(data, path)
	if err != nil || len(infos) == 0 {
		return false, err
	}
	for _, h := range append(slices.Clone(infos[0].IPAddresses), infos[0].DNSNames...) {
		if slices.Contains(hosts, h) {
			return false, nil
		}
	}
	return true, nil
}

// etcdHealthNote counts the members that are healthy and names the others, with their host
// and whether the plan expects it offline (preflight refuses any other unhealthy member, so
// the note says why the run went on without them).
func etcdHealthNote(members []etcd.Member, hostOf func(etcd.Member) (host string, offline bool)) string {
	healthy := 0
	var bad []string
	for _, m := range members {
		if m.Healthy {
			healthy++
			continue
		}
		name := m.Name
		if name == "" {
			name = fmt.Sprintf("%x", m.ID)
		}
		var about []string
		host, offline := hostOf(m)
		if host != "" && host != name {
			about = append(about, "on "+host)
		}
		if offline {
			about = append(about, "planned offline")
		} else {
			about = append(about, "not planned offline")
		}
		bad = append(bad, name+" ("+strings.Join(about, ", ")+")")
	}
	note := fmt.Sprintf("etcd members healthy: %d of %d", healthy, len(members))
	if len(bad) > 0 {
		note += " (unhealthy: " + strings.Join(bad, ", ") + ")"
	}
	return note
}

// memberHost maps a member to its inventory host by peer address (as the plan does; names
// are not identity), using the plan's resolution of host names.
func (r *run) memberHost(m etcd.Member) string {
	for _, u := range m.PeerURLs {
		ph := plan.PeerHost(u)
		addrs := append([]string{ph}, r.p.Facts.Resolved[ph]...)
		for _, ih := range r.plannedHosts() {
			if slices.Contains(addrs, ih.Address) || overlaps(r.p.Facts.Resolved[ih.Address], addrs) {
				return ih.Name
			}
		}
	}
	return ""
}

// readyProbe is the /readyz probe of a master's apiserver, verified with the cluster CA and
// authenticated with the admin kubeconfig's client certificate where it has one.
func (r *run) readyProbe(ctx context.Context, name string) (host.Host, apiserver.ReadyProbe, time.Duration, error) {
	h, ih, err := r.host(ctx, name)
	if err != nil {
		return nil, apiserver.ReadyProbe{}, 0, err
	}
	comps, err := apiserver.Observe(ctx, h, ih.Paths)
	if err != nil {
		return nil, apiserver.ReadyProbe{}, 0, err
	}
	ca, err := h.ReadFile(ctx, ih.Paths.CACert)
	if err != nil {
		return nil, apiserver.ReadyProbe{}, 0, fmt.Errorf("read CA %s:%s: %w", name, ih.Paths.CACert, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	probe := apiserver.ReadyProbe{Address: comps.APIServer.ProbeAddress(), RootCAs: pool}
	if _, cfg, err := r.c.Kube(); err == nil {
		cfg = rest.CopyConfig(cfg)
		if rest.LoadTLSFiles(cfg) == nil && len(cfg.CertData) > 0 {
			if pair, err := tls.X509KeyPair(cfg.CertData, cfg.KeyData); err == nil {
				probe.ClientCert = &pair
			}
		}
	}
	return h, probe, apiserver.ReadyDeadline(comps.APIServer), nil
}
