package runner

import (
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
)

// A 2-to-1 removal that cannot be confirmed stops with this cluster's own commands.
func TestRecoveryNamesThisCluster(t *testing.T) {
	paths := inventory.Paths{EtcdUnit: "kube-etcd", EtcdClientPort: 2379,
		EtcdCACert: "/etc/kubernetes/ssl/ca.pem", EtcdCert: "/etc/kubernetes/ssl/etcd.pem", EtcdKey: "/etc/kubernetes/ssl/etcd-key.pem"}
	p := &plan.Plan{Target: plan.Target{Remove: []string{"m2"}}, Facts: plan.Facts{Hosts: []plan.Host{
		{Name: "m1", Address: "10.0.0.1", Roles: []inventory.Role{inventory.RoleEtcd}, Paths: paths},
		{Name: "m2", Address: "10.0.0.2", Roles: []inventory.Role{inventory.RoleEtcd}, Paths: paths},
	}}}
	r := &run{p: p, history: History{Snapshot: &Snapshot{Path: "/root/plan.snapshot/snap.db", Revision: 42, Keys: 7}}}
	got := r.recovery("10.0.0.2", 0xab)
	for _, want := range []string{
		"The removal of 10.0.0.2 (ab) was sent but not confirmed",
		"on m1: ETCDCTL_API=3 etcdctl --endpoints https://10.0.0.1:2379 --cacert /etc/kubernetes/ssl/ca.pem --cert /etc/kubernetes/ssl/etcd.pem --key /etc/kubernetes/ssl/etcd-key.pem endpoint status",
		"If m1 is the only member left and has no leader",
		"systemctl stop kube-etcd",
		"--force-new-cluster",
		"etcdutl snapshot restore /root/plan.snapshot/snap.db",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("recovery lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "on m2:") {
		t.Errorf("recovery sends the operator to the leaving m2:\n%s", got)
	}
}
