package runner

import (
	"fmt"
	"strings"
)

// recovery is what the operator does when a member removal was sent but not confirmed: the
// commands for this cluster, with its real hosts, units, data directories and snapshot.
func (r *run) recovery(member string, id uint64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "The removal of %s (%x) was sent but not confirmed. Before anything else, look at the cluster:\n", member, id)
	var survivors []string
	for _, h := range r.p.Facts.Hosts {
		if h.Has("etcd") && !r.leaving(h.Name) && !r.offline(h.Name) {
			survivors = append(survivors, h.Name)
		}
	}
	for _, name := range survivors {
		h, _ := r.p.Facts.Host(name)
		ep := "https://" + h.Address + ":" + fmt.Sprint(orPort(h.Paths.EtcdClientPort))
		fmt.Fprintf(&b, "  on %s: ETCDCTL_API=3 etcdctl --endpoints %s --cacert %s --cert %s --key %s endpoint status -w table; ... member list -w table\n",
			name, ep, h.Paths.EtcdCACert, h.Paths.EtcdCert, h.Paths.EtcdKey)
	}
	fmt.Fprintf(&b, "If the members that stay have a leader and %s is gone from the list, rerun this apply: it resumes.\n", member)
	if len(survivors) == 1 {
		name := survivors[0]
		unit, dataDir := r.etcdUnitAndDataDir(name)
		fmt.Fprintf(&b, "If %s is the only member left and has no leader (the removal did not commit, and %s is gone):\n", name, member)
		fmt.Fprintf(&b, "  1. on %s: systemctl stop %s; cp -a %s %s.bak\n", name, unit, dataDir, dataDir)
		fmt.Fprintf(&b, "  2. start it once with --force-new-cluster added to its command line (systemctl cat %s shows where), check 'endpoint status', then remove the flag and restart it\n", unit)
	}
	if s := r.history.Snapshot; s != nil {
		fmt.Fprintf(&b, "Last resort, the verified snapshot of this run (revision %d, %d keys): %s\n", s.Revision, s.Keys, s.Path)
		fmt.Fprintf(&b, "  etcdutl snapshot restore %s --name NAME --initial-cluster NAME=PEER_URL --initial-advertise-peer-urls PEER_URL --data-dir NEW_DIR, then point the unit's --data-dir at NEW_DIR\n", s.Path)
	}
	return strings.TrimRight(b.String(), "\n")
}

func orPort(p int) int {
	if p == 0 {
		return 2379
	}
	return p
}

// etcdUnitAndDataDir reads a host's etcd unit name and --data-dir from the plan's facts.
func (r *run) etcdUnitAndDataDir(name string) (string, string) {
	unit, dataDir := "etcd", "DATA_DIR"
	if hu, ok := r.p.Facts.Units[name]; ok && hu.Etcd != nil {
		unit = hu.Etcd.Name
		if fl, ok := hu.Etcd.Flag("--data-dir"); ok {
			dataDir = fl.Value
		}
	} else if h, ok := r.p.Facts.Host(name); ok && h.Paths.EtcdUnit != "" {
		unit = h.Paths.EtcdUnit
	}
	return unit, dataDir
}
