package observe

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/certs/certstest"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/unitfile/unitfiletest"
)

// selfSigned returns a PEM certificate for the given IP SANs.
func selfSigned(t *testing.T, cn string, ips ...string) []byte {
	t.Helper()
	certPEM, _, err := certstest.SelfSigned(cn, ips)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM
}

func writeTree(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The env-file guide names etcd's certificates only as ETCD_*_FILE variables and the
// apiserver's inside KUBE_APISERVER_OPTS: each is found, grouped per path with every
// reference, and one that cannot be read or parsed is a recorded problem, not a silence.
func TestCertificatesNamedThroughEnvironmentFiles(t *testing.T) {
	root := t.TempDir()
	server := selfSigned(t, "etcd", "192.168.31.71", "192.168.31.72", "192.168.31.73")
	writeTree(t, root, map[string][]byte{
		"/usr/lib/systemd/system/etcd.service": []byte("[Service]\nEnvironmentFile=/opt/etcd/cfg/etcd.conf\nExecStart=/opt/etcd/bin/etcd --logger=zap\n"),
		"/opt/etcd/cfg/etcd.conf": []byte("ETCD_NAME=\"etcd-1\"\n" +
			"ETCD_CERT_FILE=\"/opt/etcd/ssl/server.pem\"\nETCD_KEY_FILE=\"/opt/etcd/ssl/server-key.pem\"\n" +
			"ETCD_PEER_CERT_FILE=\"/opt/etcd/ssl/peer.pem\"\nETCD_PEER_KEY_FILE=\"/opt/etcd/ssl/peer-key.pem\"\n" +
			"ETCD_CLIENT_CERT_FILE=\"/opt/etcd/ssl/gone.pem\"\n" +
			"ETCDCTL_CERT=/opt/etcd/ssl/admin.pem\nETCDCTL_KEY=/opt/etcd/ssl/admin-key.pem\n"),
		"/usr/lib/systemd/system/kube-apiserver.service": []byte("[Service]\nEnvironmentFile=/opt/kubernetes/cfg/kube-apiserver.conf\nExecStart=/opt/kubernetes/bin/kube-apiserver $KUBE_APISERVER_OPTS\n"),
		"/opt/kubernetes/cfg/kube-apiserver.conf": []byte("KUBE_APISERVER_OPTS=\"--v=2 \\\n--etcd-servers=https://192.168.31.71:2379 \\\n" +
			"--etcd-certfile=/opt/etcd/ssl/server.pem \\\n--etcd-keyfile=/opt/etcd/ssl/server-key.pem \\\n" +
			"--tls-cert-file=/opt/kubernetes/ssl/server.pem \\\n--tls-private-key-file=/opt/kubernetes/ssl/server-key.pem\"\n"),
		"/opt/etcd/ssl/server.pem":       server,
		"/opt/etcd/ssl/admin.pem":        selfSigned(t, "admin", "192.168.31.71", "192.168.31.72"),
		"/opt/etcd/ssl/peer.pem":         []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"),
		"/opt/kubernetes/ssl/server.pem": selfSigned(t, "kubernetes", "192.168.31.71", "10.0.0.1"),
	})
	st := func(frag string) host.UnitStatus {
		return host.UnitStatus{LoadState: "loaded", ActiveState: "active", UnitFileState: "enabled", FragmentPath: frag}
	}
	h := &unitfiletest.DirHost{HostName: "m1", Root: root, Statuses: map[string]host.UnitStatus{
		"etcd.service":           st("/usr/lib/systemd/system/etcd.service"),
		"kube-apiserver.service": st("/usr/lib/systemd/system/kube-apiserver.service"),
	}}
	ih := &inventory.Host{Name: "m1", Address: "192.168.31.71", Roles: []inventory.Role{inventory.RoleEtcd, inventory.RoleMaster},
		Paths: inventory.Paths{EtcdUnit: "etcd.service", APIServerUnit: "kube-apiserver"}}
	ctx := context.Background()
	hu, refs, err := observeUnits(ctx, h, ih)
	if err != nil {
		t.Fatal(err)
	}
	if hu.Etcd == nil || hu.Components == nil {
		t.Fatalf("units not observed: %+v", hu)
	}
	// The folders the units read flags from are scanned for leftovers too.
	if dirs := fileDirs(hu); !slices.Equal(dirs, []string{"/opt/etcd/cfg", "/opt/kubernetes/cfg", "/usr/lib/systemd/system"}) {
		t.Errorf("unit file folders %v", dirs)
	}
	c := Open(&inventory.Inventory{}, Options{})
	c.hosts["m1"] = h
	got, problems := readCerts(ctx, c, refs)

	byPath := map[string][]string{}
	for _, cert := range got {
		byPath[cert.Path] = cert.UsedBy
	}
	if u := byPath["/opt/etcd/ssl/server.pem"]; !slices.Equal(u, []string{"etcd --cert-file", "kube-apiserver --etcd-certfile"}) {
		t.Errorf("server.pem used by %v, want etcd --cert-file (ETCD_CERT_FILE) and kube-apiserver --etcd-certfile (OPTS)", u)
	}
	if u := byPath["/opt/kubernetes/ssl/server.pem"]; !slices.Equal(u, []string{"kube-apiserver --tls-cert-file"}) {
		t.Errorf("apiserver server.pem used by %v", u)
	}
	for _, cert := range got {
		if cert.Path == "/opt/etcd/ssl/server.pem" && (cert.KeyPath != "/opt/etcd/ssl/server-key.pem" || !slices.Contains(cert.Info.IPAddresses, "192.168.31.72")) {
			t.Errorf("server.pem read as %+v", cert)
		}
	}
	if u := byPath["/opt/etcd/ssl/admin.pem"]; !slices.Equal(u, []string{"etcd ETCDCTL_CERT"}) {
		t.Errorf("etcdctl's admin.pem used by %v, want etcd ETCDCTL_CERT", u)
	}
	if len(got) != 3 {
		t.Errorf("%d certificates read, want 3: %+v", len(got), got)
	}

	if len(problems) != 2 {
		t.Fatalf("problems %+v, want the unparsable peer.pem and the missing gone.pem", problems)
	}
	want := map[string]string{"/opt/etcd/ssl/peer.pem": "etcd --peer-cert-file", "/opt/etcd/ssl/gone.pem": "etcd --client-cert-file"}
	for _, p := range problems {
		if p.Host != "m1" || !slices.Equal(p.UsedBy, []string{want[p.Path]}) || p.Error == "" {
			t.Errorf("problem %+v, want host m1, used by %q and an error", p, want[p.Path])
		}
	}
	for _, p := range problems {
		if p.Path == "/opt/etcd/ssl/gone.pem" && !strings.Contains(p.Error, "no such file") {
			t.Errorf("missing file reported as %q", p.Error)
		}
	}
}
