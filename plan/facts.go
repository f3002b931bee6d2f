package plan

import (
	"time"

	apiserver "github.com/mastershrink/mastershrink/apiserver/apiserverfacts"
	"github.com/mastershrink/mastershrink/certs"
	etcd "github.com/mastershrink/mastershrink/etcd/etcdfacts"
	host "github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
	nodes "github.com/mastershrink/mastershrink/nodes/nodefacts"
	"github.com/mastershrink/mastershrink/unitfile"
	"github.com/mastershrink/mastershrink/vip"
)

// Facts are plain observations of the live cluster, gathered by package observe.
type Facts struct {
	Cluster    string     `json:"cluster"`
	Layout     string     `json:"layout"`
	ObservedAt time.Time  `json:"observed_at"`
	Hosts      []Host     `json:"hosts"`
	Etcd       etcd.Facts `json:"etcd"`
	// Units maps a host to its control-plane units.
	Units map[string]HostUnits `json:"units,omitempty"`
	// LB maps a host to its node-local proxy config, nginx's or haproxy's (NodeConfig.Kind).
	LB map[string]lb.NodeConfig `json:"lb,omitempty"`
	// ProxyMissing maps a host whose proxy config (inventory nginx_config, or haproxy_config
	// with proxy: haproxy) does not exist to what was found there instead: another proxy's
	// config or unit, or nothing. A host whose nginx config is missing but whose haproxy
	// config fronts the apiservers is in LB, as haproxy.
	ProxyMissing map[string]ProxyMissing `json:"proxy_missing,omitempty"`
	// Keepalived maps a leaving host to the signs of keepalived on it (its config, its
	// unit): a VIP it holds, or would take over, leaves with it.
	Keepalived map[string][]string `json:"keepalived,omitempty"`
	// VRRP maps a host running (or enabled to run) keepalived to its VRRP config and the VIPs
	// it holds now.
	VRRP  map[string]vip.Observed `json:"vrrp,omitempty"`
	Certs []Cert                  `json:"certs,omitempty"`
	// UnreadableCerts are certificates a unit names that could not be read or parsed: they
	// are not in Certs, so nothing re-signs them, and the plan warns about each.
	UnreadableCerts []CertProblem `json:"unreadable_certs,omitempty"`
	CA              CA            `json:"ca"`
	// EtcdCA is etcd's own CA where it is not the cluster CA (kubespray's etcd-ca): the
	// certificates it signed are re-signed with it.
	EtcdCA *CA `json:"etcd_ca,omitempty"`
	// Nodes are the Kubernetes Nodes; Pods and PDBs only for nodes to drain.
	Nodes []nodes.Node `json:"nodes,omitempty"`
	PDBs  []nodes.PDB  `json:"pdbs,omitempty"`
	// Leftovers maps a host to files outside the plan's rewrites that still name a leaving
	// host's address.
	Leftovers map[string][]string `json:"leftovers,omitempty"`
	// APIServerReady maps a master to whether its apiserver answered /readyz.
	APIServerReady map[string]bool `json:"apiserver_ready,omitempty"`
	// EtcdSelf maps an etcd host to what the etcd running there says it is, asked from the
	// host itself: the identity that names and inventories cannot fake.
	EtcdSelf map[string]EtcdSelf `json:"etcd_self,omitempty"`
	// Resolved maps the host names in etcd peer URLs and inventory addresses to the addresses
	// they resolve to on the cluster's hosts (sorted).
	Resolved map[string][]string `json:"resolved,omitempty"`
	// KubeServer is the server of the kubeconfig mastershrink uses: it must outlive the shrink.
	KubeServer string `json:"kube_server,omitempty"`
	// APIEndpoints are the apiserver addresses the API itself lists (the kubernetes
	// EndpointSlice): at least one must be an inventory master, or the kubeconfig reaches
	// another cluster.
	APIEndpoints []string `json:"api_endpoints,omitempty"`
	// LocalAddrs are the addresses of the machine running mastershrink: it must not be a host
	// that leaves.
	LocalAddrs []string `json:"local_addrs,omitempty"`
}

// ProxyMissing is a host without the proxy config the inventory names.
type ProxyMissing struct {
	Path string `json:"path"`
	// Kind is the proxy whose config is missing: empty for nginx, "haproxy".
	Kind string `json:"kind,omitempty"`
	// Other lists what looks like another apiserver proxy on the host ("haproxy.service
	// active", "/etc/haproxy/haproxy.cfg").
	Other []string `json:"other,omitempty"`
}

// EtcdSelf is the answer of one host's own etcd endpoint.
type EtcdSelf struct {
	Endpoint string `json:"endpoint"`
	// MemberID is the member ID in the answer's header (hex); empty when it did not answer.
	MemberID  string `json:"member_id,omitempty"`
	ClusterID string `json:"cluster_id,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Host is an inventory host and whether it could be reached.
type Host struct {
	Name      string           `json:"name"`
	Address   string           `json:"address"`
	Roles     []inventory.Role `json:"roles"`
	Paths     inventory.Paths  `json:"paths"`
	Reachable bool             `json:"reachable"`
	Error     string           `json:"error,omitempty"`
}

// Has says whether the host has the role.
func (h Host) Has(r inventory.Role) bool {
	for _, x := range h.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// HostUnits are the control-plane units found on one host: the etcd unit (nil when absent,
// with its state) and, on masters, the apiserver, controller-manager and scheduler.
type HostUnits struct {
	Etcd       *unitfile.Unit        `json:"etcd,omitempty"`
	EtcdStatus host.UnitStatus       `json:"etcd_status"`
	Components *apiserver.Components `json:"components,omitempty"`
	// Mismatches are the units the inventory names there that do not run, while their
	// program runs there under another unit.
	Mismatches []UnitMismatch `json:"unit_mismatches,omitempty"`
}

// UnitMismatch is an inventory unit field the host disagrees with.
type UnitMismatch struct {
	// Field is the inventory paths field ("etcd_unit"), Inventory the unit it names, State
	// that unit's state on the host ("not-found", "inactive", "failed").
	Field     string `json:"field"`
	Inventory string `json:"inventory"`
	State     string `json:"state"`
	// Program runs on the host as the unit Found.
	Program string `json:"program"`
	Found   string `json:"found"`
}

// Cert is a certificate a unit references, on a host.
type Cert struct {
	Host    string `json:"host"`
	Path    string `json:"path"`
	KeyPath string `json:"key_path,omitempty"`
	// UsedBy lists "unit --flag" references, for the plan's reader.
	UsedBy []string   `json:"used_by"`
	Info   certs.Info `json:"info"`
	// ResignProblem says why the cluster CA cannot re-sign this certificate as it is (issuer,
	// CA key, profile, usages), checked when it names a leaving address; empty when it can.
	ResignProblem string `json:"resign_problem,omitempty"`
	// SignedBy is "etcd" when etcd's own CA (Facts.EtcdCA) signed it, empty for the cluster CA.
	SignedBy string `json:"signed_by,omitempty"`
}

// CertProblem is a certificate a unit names that mastershrink could not read or parse.
type CertProblem struct {
	Host string `json:"host"`
	Path string `json:"path"`
	// UsedBy lists the "unit --flag" references, as in Cert.
	UsedBy []string `json:"used_by"`
	Error  string   `json:"error"`
}

// CA says where the cluster CA lives and whether its key is there.
type CA struct {
	Host          string `json:"host"`
	CertPath      string `json:"cert_path"`
	KeyPath       string `json:"key_path"`
	ConfigPath    string `json:"config_path,omitempty"`
	KeyPresent    bool   `json:"key_present"`
	ConfigPresent bool   `json:"config_present"`
	// KeyOnLeaving lists the leaving masters that hold the CA key ("host:path"): when no staying
	// master does, the shrink would retire the last copy.
	KeyOnLeaving []string `json:"key_on_leaving,omitempty"`
}

// Host returns the host fact by name.
func (f *Facts) Host(name string) (Host, bool) {
	for _, h := range f.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}
