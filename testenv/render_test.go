package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestNginxConfigPassesNginxT(t *testing.T) {
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Skip("nginx not installed on the host (apt-get install nginx libnginx-mod-stream)")
	}
	for _, name := range LayoutNames() {
		t.Run(name, func(t *testing.T) {
			o := Options{Layout: name}
			if err := o.setDefaults(); err != nil {
				t.Fatal(err)
			}
			l := plan(o)
			lay, _ := LookupLayout(name)
			prefix := t.TempDir()
			os.MkdirAll(filepath.Join(prefix, "logs"), 0o755)
			conf := l.nginxConf(lay)
			// Absolute log paths of the layout move under the test prefix.
			conf = strings.ReplaceAll(conf, lay.Paths.NginxPrefix+"/", prefix+"/")
			if n := strings.Count(conf, "server 10.88.0."); n != 3 {
				t.Errorf("config names %d apiservers, want 3:\n%s", n, conf)
			}
			if !strings.Contains(conf, "listen "+lay.NginxListenDirective+";") {
				t.Errorf("config lacks listen %s:\n%s", lay.NginxListenDirective, conf)
			}
			path := filepath.Join(prefix, "nginx.conf")
			if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("nginx", "-t", "-c", path, "-p", prefix).CombinedOutput()
			if err != nil {
				t.Fatalf("nginx -t: %v\n%s\n%s", err, out, conf)
			}
		})
	}
}

func TestLayoutUnitsUseLayoutPaths(t *testing.T) {
	for _, name := range LayoutNames() {
		o := Options{Layout: name}
		if err := o.setDefaults(); err != nil {
			t.Fatal(err)
		}
		l := plan(o)
		lay, _ := LookupLayout(name)
		m := l.Machines[0]
		etcd := l.etcdUnit(lay, m, lay.BinDir+"/etcd")
		for _, want := range []string{
			"--initial-cluster=" + lay.EtcdNamePrefix + "10.88.0.11=https://10.88.0.11:2380," + lay.EtcdNamePrefix + "10.88.0.12=https://10.88.0.12:2380",
			"--cert-file=" + lay.Paths.EtcdCert, "--data-dir=" + lay.EtcdDataDir,
		} {
			if !strings.Contains(etcd, want) {
				t.Errorf("%s etcd unit lacks %s:\n%s", name, want, etcd)
			}
		}
		api := l.apiserverUnit(lay, m)
		for _, want := range []string{
			"--etcd-servers=https://10.88.0.11:2379,https://10.88.0.12:2379,https://10.88.0.13:2379",
			"--service-cluster-ip-range=10.254.0.0/16", "--advertise-address=10.88.0.11", "--request-timeout=10s",
		} {
			if !strings.Contains(api, want) {
				t.Errorf("%s apiserver unit lacks %s:\n%s", name, want, api)
			}
		}
		if !strings.Contains(l.nginxUnit(lay), lay.Paths.NginxBinary) {
			t.Errorf("%s nginx unit does not run %s", name, lay.Paths.NginxBinary)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{Masters: 6}, {Workers: 5}, {Layout: "hardway"}, {EtcdVersion: "3.3"}, {Name: "Bad_Name"}} {
		if err := o.setDefaults(); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	o := Options{EtcdVersion: "v3.4.23"}
	if err := o.setDefaults(); err != nil || o.EtcdVersion != DebianEtcdVersion || o.Masters != 3 || o.Workers != 2 || o.Layout != "seed003" {
		t.Errorf("defaults: %+v %v", o, err)
	}
}
