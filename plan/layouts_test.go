package plan

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/unitfile"
)

// The survivor's etcd unit of the env-file guides and of an etcd.config.yml: the plan's
// --initial-cluster step rewrites the file where the value lives (etcd.conf's variable, the
// YAML key), and the human plan shows that file's diff. Before unitfile read etcd's config
// file, the second made the whole plan refuse.
func TestInitialClusterWhereTheValueLives(t *testing.T) {
	ip := masterIP(1)
	initial := ip + "=https://" + ip + ":2380," + masterIP(2) + "=https://" + masterIP(2) + ":2380," + masterIP(3) + "=https://" + masterIP(3) + ":2380"
	const frag = "/etc/systemd/system/kube-etcd.service"
	cases := []struct {
		name, unit, file, content, want string
	}{
		{"etcd.conf", "[Service]\nEnvironmentFile=/opt/etcd/cfg/etcd.conf\nExecStart=/opt/etcd/bin/etcd\n",
			"/opt/etcd/cfg/etcd.conf",
			"ETCD_NAME=\"" + ip + "\"\nETCD_INITIAL_CLUSTER=\"" + initial + "\"\nETCD_INITIAL_CLUSTER_STATE=\"new\"\n",
			"+ETCD_INITIAL_CLUSTER=\"" + ip + "=https://" + ip + ":2380\"\n"},
		{"config file", "[Service]\nExecStart=/usr/local/bin/etcd --config-file=/etc/etcd/etcd.config.yml\n",
			"/etc/etcd/etcd.config.yml",
			"name: '" + ip + "'\ninitial-cluster: '" + initial + "'\ninitial-cluster-state: 'new'\n",
			"+initial-cluster: '" + ip + "=https://" + ip + ":2380'\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := seed003.facts(t)
			u, err := unitfile.Parse("kube-etcd", frag, map[string]string{frag: c.unit}, nil, map[string]string{c.file: c.content})
			if err != nil {
				t.Fatal(err)
			}
			hu := f.Units["m1"]
			hu.Etcd = u
			f.Units["m1"] = hu
			p := Build(f, Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
			if len(p.Refusals) > 0 {
				t.Fatalf("refused: %+v", p.Refusals)
			}
			var step *Step
			for i := range p.Steps {
				if p.Steps[i].ID == KindInitialCluster+"/m1" {
					step = &p.Steps[i]
				}
			}
			if step == nil || len(step.Files) != 1 || step.Files[0].Path != c.file {
				t.Fatalf("initial-cluster step %+v, want one rewrite of %s", step, c.file)
			}
			var out bytes.Buffer
			if err := Render(&out, p); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "+++ b"+c.file) || !strings.Contains(out.String(), c.want) {
				t.Errorf("rendered plan lacks the diff of %s with %q:\n%s", c.file, c.want, out.String())
			}
		})
	}
}
