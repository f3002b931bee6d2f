package bench

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/mastershrink/mastershrink/testenv"
)

// ManualStep is one stage of seed 003's procedure: a shell script run as root on each of
// its hosts in turn, as the write-up has the operator do over SSH.
type ManualStep struct {
	Name   string
	Hosts  []string
	Script string
}

// Seed003Steps is seed 003's manual 3-to-1 shrink for the lab (m1 stays, m2 and m3 leave),
// command for command and in the write-up's order: proxies first, then the leaving
// apiservers, new certificates with cfssl, --etcd-servers, a snapshot from the leader, the
// member removals, etcd off on the leaving hosts, --initial-cluster, and the restarts of the
// survivor's etcd and control plane at the end.
func Seed003Steps(lab *testenv.Lab) ([]ManualStep, error) {
	lay, err := testenv.LookupLayout(lab.Layout)
	if err != nil {
		return nil, err
	}
	if lay.Name != "seed003" {
		return nil, fmt.Errorf("the manual procedure is seed 003's: lab layout %s", lay.Name)
	}
	p := lay.Paths
	var all, leaving []string
	var stay testenv.Machine
	var leavingIPs []string
	for _, m := range lab.Machines {
		all = append(all, m.Name)
		switch m.Name {
		case "m1":
			stay = m
		case "m2", "m3":
			leaving = append(leaving, m.Name)
			leavingIPs = append(leavingIPs, m.Address)
		}
	}
	if stay.Name == "" || len(leaving) != 2 {
		return nil, fmt.Errorf("lab %s: want masters m1, m2, m3", lab.Name)
	}
	ssl := p.PKIDir
	bin := lay.BinDir
	stamp := `$(date +%FT%T%z)`
	etcdctl := fmt.Sprintf("ETCDCTL_API=3 %s/etcdctl --cacert %s --cert %s --key %s", bin, p.EtcdCACert, p.EtcdCert, p.EtcdKey)
	local := fmt.Sprintf("https://%s:%d", stay.Address, p.EtcdClientPort)
	apiUnit := "/etc/systemd/system/" + p.APIServerUnit + ".service"
	etcdUnit := "/etc/systemd/system/" + p.EtcdUnit + ".service"

	var markDown, dropHosts []string
	for _, ip := range leavingIPs {
		re := strings.ReplaceAll(ip, ".", `\.`)
		markDown = append(markDown, fmt.Sprintf(`-e 's#^(\s*server %s:%d[^;]*);#\1 down;#'`, re, p.APIServerPort))
		dropHosts = append(dropHosts, fmt.Sprintf(`-e '/"%s"/d'`, re))
	}
	removeMember := func(ip string) string {
		return fmt.Sprintf(`id=$(%s --endpoints %s member list | awk -F', ' '$3=="%s" {print $1}')
test -n "$id"
%s --endpoints %s member remove "$id"
`, etcdctl, local, ip, etcdctl, local)
	}
	return []ManualStep{
		{Name: "mark leaving apiservers down in every nginx, test, reload", Hosts: all, Script: fmt.Sprintf(`
cp %[1]s %[1]s.bak-%[2]s
sed -i -E %[3]s %[1]s
%[4]s -p %[5]s -c %[1]s -t
systemctl reload %[6]s
`, p.NginxConfig, stamp, strings.Join(markDown, " "), p.NginxBinary, p.NginxPrefix, p.NginxUnit)},
		{Name: "stop and disable kube-apiserver on leaving masters", Hosts: leaving, Script: "systemctl disable " + p.APIServerUnit + " --now\n"},
		{Name: "check the API from the survivor (kubectl get node)", Hosts: []string{"m1"}, Script: bin + "/kubectl get node >/dev/null\n"},
		{Name: "regenerate etcd and apiserver certificates with cfssl", Hosts: []string{"m1"}, Script: fmt.Sprintf(`
cd %[1]s
for n in etcd kubernetes; do
  sed -i %[2]s $n-csr.json
  %[3]s/cfssl gencert -ca=%[7]s -ca-key=%[8]s -config=%[5]s -profile=kubernetes $n-csr.json | %[3]s/cfssljson -bare $n
  mv %[4]s/$n.pem %[4]s/$n.pem-bak-%[6]s
  mv %[4]s/$n-key.pem %[4]s/$n-key.pem-bak-%[6]s
  cp $n.pem $n-key.pem %[4]s/
done
`, p.CSRDir, strings.Join(dropHosts, " "), bin, ssl, path.Base(p.CAConfig), stamp, p.CACert, p.CAKey)},
		{Name: "edit --etcd-servers of kube-apiserver (no restart yet)", Hosts: []string{"m1"}, Script: fmt.Sprintf(`
cp %[1]s %[1]s-bak-%[2]s
sed -i -E 's#--etcd-servers=[^ \\]+#--etcd-servers=%[3]s#' %[1]s
`, apiUnit, stamp, local)},
		{Name: "etcdctl snapshot save from the leader", Hosts: []string{"m1"}, Script: fmt.Sprintf(`
leader=$(%[1]s --endpoints %[2]s endpoint status --cluster | awk -F', ' '$5=="true" {print $1}')
test -n "$leader"
%[1]s --endpoints "$leader" snapshot save /root/etcd-snapshot.db >/dev/null
`, etcdctl, local)},
		{Name: "etcdctl member remove m3, then m2", Hosts: []string{"m1"}, Script: removeMember(leavingIPs[1]) + removeMember(leavingIPs[0])},
		{Name: "stop and disable etcd on leaving masters", Hosts: leaving, Script: "systemctl disable " + p.EtcdUnit + " --now\n"},
		{Name: "edit --initial-cluster, daemon-reload", Hosts: []string{"m1"}, Script: fmt.Sprintf(`
cp %[1]s %[1]s-bak-%[2]s
sed -i -E 's#--initial-cluster=[^ \\]+#--initial-cluster=%[3]s=https://%[3]s:%[4]d#' %[1]s
systemctl daemon-reload
`, etcdUnit, stamp, stay.Address, p.EtcdPeerPort)},
		{Name: "restart etcd, endpoint health", Hosts: []string{"m1"}, Script: fmt.Sprintf(`
systemctl restart %s
%s --endpoints %s endpoint health >/dev/null
`, p.EtcdUnit, etcdctl, local)},
		{Name: "restart kube-apiserver, controller-manager, scheduler; kubectl get node", Hosts: []string{"m1"}, Script: fmt.Sprintf(`
systemctl restart %s %s %s
timeout 300 sh -c 'until %s/kubectl get node >/dev/null 2>&1; do sleep 1; done'
`, p.APIServerUnit, p.ControllerManagerUnit, p.SchedulerUnit, bin)},
		{Name: "stop and disable controller-manager and scheduler on leaving masters", Hosts: leaving,
			Script: fmt.Sprintf("systemctl disable %s %s --now\n", p.ControllerManagerUnit, p.SchedulerUnit)},
	}, nil
}

// Script renders the steps as one annotated shell script (for the record and the README).
func Script(steps []ManualStep) string {
	var b strings.Builder
	for i, s := range steps {
		fmt.Fprintf(&b, "# %d. %s (on %s)\n%s\n", i+1, s.Name, strings.Join(s.Hosts, ", "), strings.TrimSpace(s.Script))
		b.WriteString("\n")
	}
	return b.String()
}

// ManualShrink runs Seed003Steps in a fresh lab with the prober and the watches running,
// timing each stage.
func ManualShrink(ctx context.Context, lab *testenv.Lab, o ShrinkOptions) (ShrinkResult, error) {
	var r ShrinkResult
	steps, err := Seed003Steps(lab)
	if err != nil {
		return r, err
	}
	prober, watches, err := load(ctx, lab)
	if err != nil {
		return r, err
	}
	start := time.Now()
	for _, s := range steps {
		t0 := time.Now()
		for _, h := range s.Hosts {
			out, err := lab.Exec(ctx, h, "bash", "-ec", s.Script)
			if o.Log != nil {
				fmt.Fprintf(o.Log, "# %s on %s\n%s\n", s.Name, h, out)
			}
			if err != nil {
				r.stopLoad(prober, watches)
				return r, fmt.Errorf("manual step %q on %s: %w", s.Name, h, err)
			}
		}
		r.Stages = append(r.Stages, Stage{Name: s.Name, Seconds: time.Since(t0).Seconds()})
	}
	r.Total = time.Since(start)
	r.stopLoad(prober, watches)
	return r, checkAfter(ctx, lab)
}
