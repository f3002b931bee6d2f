package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mastershrink/mastershrink/certs"
	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
)

var (
	_ = register(plan.KindCertResign, typed((*run).certStep))
)

// ---- certificates

// certTarget is where a certificate is served, and which unit may be restarted to serve it.
type certTarget struct {
	probe string
	unit  string
	wait  time.Duration
}

// servedBy picks, from the plan's "unit --flag" uses, the endpoint that serves the
// certificate. kube-apiserver reloads its serving certificate by itself and is never
// restarted here: it may be the only one left.
func (r *run) servedBy(ih *inventory.Host, usedBy []string) certTarget {
	var peer certTarget
	for _, u := range usedBy {
		unit, flag, _ := strings.Cut(strings.TrimSpace(u), " ")
		switch flag {
		case "--cert-file":
			return certTarget{probe: net.JoinHostPort(ih.Address, strconv.Itoa(ih.Paths.EtcdClientPort)), unit: unit, wait: 15 * time.Second}
		case "--tls-cert-file":
			return certTarget{probe: net.JoinHostPort(ih.Address, strconv.Itoa(ih.Paths.APIServerPort))}
		case "--peer-cert-file":
			peer = certTarget{probe: net.JoinHostPort(ih.Address, strconv.Itoa(ih.Paths.EtcdPeerPort)), unit: unit, wait: 15 * time.Second}
		}
	}
	return peer
}

func (r *run) certStep(st plan.Step, p plan.CertResignParams) executor {
	path, keyPath, hosts, remove := p.Path, p.KeyPath, p.Hosts, p.Remove
	lacksRemoved := func(data []byte) (bool, *certs.Info, error) {
		infos, _, err := certs.ParsePEM(data, path)
		if err != nil {
			return false, nil, err
		}
		info := infos[0]
		for _, h := range append(slices.Clone(info.IPAddresses), info.DNSNames...) {
			if slices.Contains(remove, h) {
				return false, &info, nil
			}
		}
		return true, &info, nil
	}
	installed := func(ctx context.Context, name string) (bool, error) {
		h, ih, err := r.host(ctx, name)
		if err != nil {
			return false, err
		}
		data, err := h.ReadFile(ctx, path)
		if err != nil {
			return false, fmt.Errorf("read %s:%s: %w", name, path, err)
		}
		ok, _, err := lacksRemoved(data)
		if err != nil || !ok {
			return false, err
		}
		t := r.servedBy(ih, usedBy(p, name))
		if t.probe == "" {
			return true, nil
		}
		served, err := certs.ServedCertificate(ctx, h, t.probe, "", nil, nil)
		if err != nil {
			return false, nil
		}
		_, certsOnDisk, _ := certs.ParsePEM(data, path)
		return len(certsOnDisk) > 0 && bytes.Equal(served.Raw, certsOnDisk[0].Raw), nil
	}
	return executor{
		phase: "re-signing and installing " + path,
		done: func(ctx context.Context) (bool, string, error) {
			for _, name := range hosts {
				ok, err := installed(ctx, name)
				if err != nil || !ok {
					return false, "", err
				}
			}
			return true, "installed without " + strings.Join(remove, ", ") + " and served on " + strings.Join(hosts, ", "), nil
		},
		apply: func(ctx context.Context) (outcome, error) {
			first, _, err := r.host(ctx, hosts[0])
			if err != nil {
				return outcome{}, err
			}
			oldPEM, err := first.ReadFile(ctx, path)
			if err != nil {
				return outcome{}, fmt.Errorf("read %s:%s: %w", hosts[0], path, err)
			}
			keyPEM, err := first.ReadFile(ctx, keyPath)
			if err != nil {
				return outcome{}, fmt.Errorf("read %s:%s: %w", hosts[0], keyPath, err)
			}
			newPEM := oldPEM
			var warnings []string
			done, info, err := lacksRemoved(oldPEM)
			if err != nil {
				return outcome{}, err
			}
			if !done {
				// An earlier run that stopped after installing on the first host left the new
				// certificate there: it is reused for the others, so every host gets the same one.
				ca, err := r.loadCA(ctx, r.stepCA(p))
				if err != nil {
					return outcome{}, err
				}
				_, parsed, err := certs.ParsePEM(oldPEM, path)
				if err != nil {
					return outcome{}, err
				}
				// The key pair is kept: the certificate is the only thing that changes, so a
				// stop between the two writes cannot leave a certificate without its key.
				res, err := certs.Resign(parsed[0], ca, certs.ResignOptions{RemoveHosts: remove, ReuseKey: true, ExistingKeyPEM: keyPEM})
				if err != nil {
					return outcome{}, err
				}
				newPEM, warnings = res.CertPEM, res.Warnings
				info = &res.Info
			}
			// Each host's copy must still be the certificate the plan saw (or this step's new
			// one, from an earlier run), proven before anything is written: the new pair
			// replaces the copy and its key, which must not be a pair issued since.
			for _, name := range hosts {
				h, _, err := r.host(ctx, name)
				if err != nil {
					return outcome{}, err
				}
				cur, err := h.ReadFile(ctx, path)
				if err != nil {
					return outcome{}, fmt.Errorf("read %s:%s: %w", name, path, err)
				}
				if err := sameCertificate(cur, newPEM, path, p.Serial); err != nil {
					return outcome{}, fmt.Errorf("%s:%s: %w", name, path, err)
				}
			}
			var changes []Change
			backups := map[string]string{}
			for _, name := range hosts {
				h, ih, err := r.host(ctx, name)
				if err != nil {
					return outcome{}, err
				}
				cur, _ := h.ReadFile(ctx, path)
				t := r.servedBy(ih, usedBy(p, name))
				res, err := certs.Install(ctx, h, certs.InstallPlan{CertPath: path, KeyPath: keyPath, CertPEM: newPEM, KeyPEM: keyPEM,
					Probe: t.probe, Unit: t.unit, ReloadWait: t.wait, Timeout: 3 * time.Minute, BeforeRestart: r.quorumWithout})
				if err != nil {
					return outcome{}, err
				}
				for _, b := range res.Backups {
					backups[name+":"+strings.SplitN(b, ".bak-", 2)[0]] = b
				}
				if !bytes.Equal(cur, newPEM) {
					changes = append(changes, Change{Host: name, File: path, Action: "install-certificate",
						BeforeSHA256: sha(cur), AfterSHA256: sha(newPEM), Detail: "SANs " + strings.Join(certs.Hosts(*info), ",")})
				}
				if res.Restarted {
					changes = append(changes, Change{Host: name, Unit: t.unit, Action: "restart", Detail: "to serve the new certificate"})
				}
			}
			return outcome{backups: backups, changes: changes, warnings: warnings,
				note: fmt.Sprintf("serial %s, SANs %s", info.Serial, strings.Join(certs.Hosts(*info), ", "))}, nil
		},
	}
}

// ErrCertChanged is a certificate that is no longer the one the plan re-signs.
var ErrCertChanged = errors.New("the certificate changed since the plan")

// sameCertificate proves cur is the certificate of serial the plan saw, or newPEM already.
// A plan without a serial (made by hand) proves nothing here.
func sameCertificate(cur, newPEM []byte, path, serial string) error {
	if serial == "" || bytes.Equal(cur, newPEM) {
		return nil
	}
	infos, _, err := certs.ParsePEM(cur, path)
	if err != nil {
		return err
	}
	if infos[0].Serial != serial {
		return fmt.Errorf("%w: it has serial %s, the plan re-signs serial %s; make the plan again", ErrCertChanged, infos[0].Serial, serial)
	}
	return nil
}

// stepCA is the CA that re-signs a step's certificate: etcd's own where the plan names one
// (the CA that signed it), else the cluster CA of the facts.
func (r *run) stepCA(p plan.CertResignParams) plan.CA {
	if p.CACert != "" {
		return plan.CA{Host: p.CAHost, CertPath: p.CACert, KeyPath: p.CAKey}
	}
	return r.p.Facts.CA
}

// loadCA reads a CA from its host; its key stays in memory.
func (r *run) loadCA(ctx context.Context, ca plan.CA) (certs.CA, error) {
	h, _, err := r.host(ctx, ca.Host)
	if err != nil {
		return certs.CA{}, fmt.Errorf("CA host %s: %w", ca.Host, err)
	}
	loaded, err := certs.LoadCAFrom(ctx, h, ca.CertPath, ca.KeyPath, ca.ConfigPath)
	if err != nil {
		return certs.CA{}, fmt.Errorf("CA on %s: %w", ca.Host, err)
	}
	return loaded, nil
}

// quorumWithout is the check before etcd is restarted to serve a new certificate, the one a
// membership change gets: every member healthy and a leader, so the cluster keeps its quorum
// while one member is down.
func (r *run) quorumWithout(ctx context.Context) error {
	cli, err := r.c.Etcd(ctx)
	if err != nil {
		return err
	}
	f, err := cli.Observe(ctx)
	if err != nil {
		return err
	}
	if f.LeaderID == 0 {
		return fmt.Errorf("%w: etcd has no leader", etcd.ErrQuorumAtRisk)
	}
	healthy := 0
	for _, m := range f.Members {
		if m.Healthy {
			healthy++
		}
	}
	if len(f.Members) > 1 && healthy-1 < etcd.Quorum(len(f.Members)) {
		return fmt.Errorf("%w: %d of %d members healthy: restarting one would leave %d, below the quorum of %d",
			etcd.ErrQuorumAtRisk, healthy, len(f.Members), healthy-1, etcd.Quorum(len(f.Members)))
	}
	return nil
}

// usedBy is how the certificate is used on one host: hosts that use it otherwise than the
// step's first host have their own entry.
func usedBy(p plan.CertResignParams, hostName string) []string {
	if u, ok := p.UsedByOn[hostName]; ok {
		return u
	}
	return p.UsedBy
}
