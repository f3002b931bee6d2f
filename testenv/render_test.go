package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/unitfile"
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
		// What the programs get, read as mastershrink reads it: flags on ExecStart, or in the
		// env-file layout etcd's ETCD_* variables and the apiserver's KUBE_APISERVER_OPTS.
		env := map[string]string{}
		if lay.Kubespray {
			env[lay.EtcdConf] = kubesprayEtcdEnv(l.etcdFlags(lay, m), lay.EtcdCertDir, m.Name)
		}
		if lay.EnvFiles {
			env[lay.EtcdConf] = etcdConf(l.etcdFlags(lay, m))
			env[filepath.Join(lay.KubeCfgDir, lay.Paths.APIServerUnit+".conf")] = optsConf(lay.Paths.APIServerUnit, l.apiserverFlags(lay, m))
		}
		parse := func(unit, text string) *unitfile.Unit {
			frag := "/etc/systemd/system/" + unit + ".service"
			u, err := unitfile.Parse(unit, frag, map[string]string{frag: text}, nil, env)
			if err != nil {
				t.Fatalf("%s %s unit: %v\n%s", name, unit, err, text)
			}
			return u
		}
		etcd := parse(lay.Paths.EtcdUnit, l.etcdUnit(lay, m, lay.BinDir+"/etcd"))
		etcdCert, etcdKey := lay.Paths.EtcdCert, lay.Paths.EtcdKey
		if lay.EtcdServingCert != "" {
			etcdCert, etcdKey = lay.EtcdServingCert, lay.EtcdServingKey
		}
		for flag, want := range map[string]string{
			"--initial-cluster": l.etcdName(lay, l.Machines[0]) + "=https://10.88.0.11:2380," + l.etcdName(lay, l.Machines[1]) + "=https://10.88.0.12:2380," + l.etcdName(lay, l.Machines[2]) + "=https://10.88.0.13:2380",
			"--name":            l.etcdName(lay, m),
			"--cert-file":       forHost(etcdCert, m), "--peer-key-file": forHost(etcdKey, m), "--data-dir": lay.EtcdDataDir, "--client-cert-auth": "",
		} {
			if f, ok := etcd.Flag(flag); !ok || (f.Value != want && !(want == "" && f.Value == "true")) {
				t.Errorf("%s etcd: %s = %q (set %v), want %q", name, flag, f.Value, ok, want)
			}
		}
		api := parse(lay.Paths.APIServerUnit, l.apiserverUnit(lay, m))
		for flag, want := range map[string]string{
			"--etcd-servers":             "https://10.88.0.11:2379,https://10.88.0.12:2379,https://10.88.0.13:2379",
			"--service-cluster-ip-range": "10.254.0.0/16", "--advertise-address": "10.88.0.11", "--request-timeout": "10s",
			"--etcd-certfile": forHost(lay.APIServerEtcdCert, m), "--tls-cert-file": lay.APIServerCert,
		} {
			if f, _ := api.Flag(flag); f.Value != want {
				t.Errorf("%s apiserver: %s = %q, want %q", name, flag, f.Value, want)
			}
		}
		if !strings.Contains(l.nginxUnit(lay), lay.Paths.NginxBinary) {
			t.Errorf("%s nginx unit does not run %s", name, lay.Paths.NginxBinary)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{Masters: 6}, {Workers: 5}, {Layout: "kubeadm"}, {EtcdVersion: "3.3"}, {Name: "Bad_Name"}} {
		if err := o.setDefaults(); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	o := Options{EtcdVersion: "v3.4.23"}
	if err := o.setDefaults(); err != nil || o.EtcdVersion != DebianEtcdVersion || o.Masters != 3 || o.Workers != 2 || o.Layout != "seed003" {
		t.Errorf("defaults: %+v %v", o, err)
	}
}
