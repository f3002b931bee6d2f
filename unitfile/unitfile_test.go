package unitfile_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/internal/golden"
	"github.com/mastershrink/mastershrink/unitfile"
	"github.com/mastershrink/mastershrink/unitfile/unitfiletest"
)

// fixture is one layout in testdata/<dir>/root, read through Read as on a host.
type fixture struct {
	dir      string
	unit     string
	fragment string
	dropIns  []string
}

var fixtures = []fixture{
	{dir: "seed003", unit: "kube-apiserver", fragment: "/etc/systemd/system/kube-apiserver.service"},
	{dir: "seed003", unit: "kube-etcd", fragment: "/etc/systemd/system/kube-etcd.service"},
	{dir: "kubeasz", unit: "kube-apiserver", fragment: "/etc/systemd/system/kube-apiserver.service"},
	{dir: "kubeasz", unit: "etcd", fragment: "/etc/systemd/system/etcd.service"},
	{dir: "envfile", unit: "kube-apiserver", fragment: "/usr/lib/systemd/system/kube-apiserver.service"},
	{dir: "dropin", unit: "kube-apiserver", fragment: "/lib/systemd/system/kube-apiserver.service",
		dropIns: []string{"/etc/systemd/system/kube-apiserver.service.d/10-flags.conf", "/etc/systemd/system/kube-apiserver.service.d/20-limits.conf"}},
	{dir: "comments", unit: "kube-apiserver", fragment: "/etc/systemd/system/kube-apiserver.service"},
	{dir: "envguide", unit: "etcd", fragment: "/usr/lib/systemd/system/etcd.service"},
	{dir: "envguide", unit: "kube-apiserver", fragment: "/usr/lib/systemd/system/kube-apiserver.service"},
	{dir: "etcdyaml", unit: "etcd", fragment: "/etc/systemd/system/etcd.service"},
	{dir: "hardway", unit: "etcd", fragment: "/etc/systemd/system/etcd.service"},
	{dir: "hardway", unit: "kube-apiserver", fragment: "/etc/systemd/system/kube-apiserver.service"},
	{dir: "kubespray", unit: "etcd", fragment: "/etc/systemd/system/etcd.service"},
}

func (f fixture) name() string { return f.dir + "/" + f.unit }

func (f fixture) read(t *testing.T) *unitfile.Unit {
	t.Helper()
	name := unitfile.NormalizeName(f.unit)
	h := &unitfiletest.DirHost{
		HostName: "m1",
		Root:     filepath.Join("testdata", f.dir, "root"),
		Statuses: map[string]host.UnitStatus{name: {LoadState: "loaded", FragmentPath: f.fragment, DropInPaths: f.dropIns}},
	}
	u, err := unitfile.Read(context.Background(), h, f.unit)
	if err != nil {
		t.Fatalf("read %s: %v", f.name(), err)
	}
	return u
}

func fixtureByName(t *testing.T, name string) fixture {
	for _, f := range fixtures {
		if f.name() == name {
			return f
		}
	}
	t.Fatalf("no fixture %s", name)
	return fixture{}
}

func describe(u *unitfile.Unit) string {
	var b strings.Builder
	fmt.Fprintf(&b, "unit %s\nfragment %s\n", u.Name, u.FragmentPath)
	for _, d := range u.DropIns {
		fmt.Fprintf(&b, "drop-in %s\n", d)
	}
	for _, e := range u.EnvironmentFiles {
		fmt.Fprintf(&b, "environment-file %s optional=%v missing=%v\n", e.Path, e.Optional, e.Missing)
	}
	if u.ConfigFile != "" {
		fmt.Fprintf(&b, "config-file %s\n", u.ConfigFile)
	}
	fmt.Fprintf(&b, "exec %s\n", u.Args[0])
	for _, f := range u.Flags {
		form := "="
		if f.Separate {
			form = " "
		}
		fmt.Fprintf(&b, "%s%s%s\t%s:%d", f.Name, form, f.Value, f.File, f.Line)
		if f.Var != "" {
			fmt.Fprintf(&b, " var=%s", f.Var)
		}
		if f.FromEnv {
			b.WriteString(" from-env")
		}
		if f.Key != "" {
			fmt.Fprintf(&b, " key=%s", f.Key)
		}
		if err := f.Editable(); err != nil {
			b.WriteString(" not-editable")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestParseFlagsGolden(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.name(), func(t *testing.T) {
			u := f.read(t)
			golden.Check(t, filepath.Join("testdata", f.dir, f.unit+".flags.golden"), describe(u))
		})
	}
}

func TestParseSpecifics(t *testing.T) {
	cases := []struct {
		fixture, flag, value, file, varName string
		separate                            bool
	}{
		{"seed003/kube-apiserver", "--etcd-servers", "https://172.72.0.95:2379,https://172.72.0.96:2379,https://172.72.0.97:2379", "/etc/systemd/system/kube-apiserver.service", "", false},
		{"seed003/kube-etcd", "--initial-cluster", "172.72.0.95=https://172.72.0.95:2380,172.72.0.96=https://172.72.0.96:2380,172.72.0.97=https://172.72.0.97:2380", "/etc/systemd/system/kube-etcd.service", "", false},
		{"kubeasz/kube-apiserver", "requestheader-allowed-names", "", "/etc/systemd/system/kube-apiserver.service", "", false},
		{"envfile/kube-apiserver", "--etcd-servers", "https://10.10.0.11:2379,https://10.10.0.12:2379,https://10.10.0.13:2379", "/etc/kubernetes/apiserver", "KUBE_ETCD_SERVERS", false},
		{"envfile/kube-apiserver", "--apiserver-count", "3", "/etc/kubernetes/apiserver", "KUBE_API_ARGS", false},
		{"envfile/kube-apiserver", "--v", "2", "/etc/kubernetes/apiserver", "KUBE_API_ARGS", false},
		{"dropin/kube-apiserver", "--etcd-servers", "https://10.20.0.1:2379,https://10.20.0.2:2379,https://10.20.0.3:2379", "/etc/systemd/system/kube-apiserver.service.d/10-flags.conf", "ETCD_SERVERS", false},
		{"dropin/kube-apiserver", "--apiserver-count", "3", "/etc/systemd/system/kube-apiserver.service.d/10-flags.conf", "APISERVER_COUNT", true},
		{"dropin/kube-apiserver", "--etcd-cafile", "/etc/kubernetes/pki/etcd/ca.crt", "/etc/systemd/system/kube-apiserver.service.d/10-flags.conf", "", true},
		{"comments/kube-apiserver", "--etcd-servers", "https://10.30.0.1:2379,https://10.30.0.2:2379,https://10.30.0.3:2379", "/etc/systemd/system/kube-apiserver.service", "", false},
		{"comments/kube-apiserver", "--etcd-certfile", "/etc/kubernetes/ssl/etcd-client.pem", "/etc/systemd/system/kube-apiserver.service", "", false},
		{"comments/kube-apiserver", "--audit-log-path", "/var/log/kube-audit/%Y.log", "/etc/systemd/system/kube-apiserver.service", "", false},
		// etcd reads ETCD_<FLAG> from its environment: the guide's etcd.conf is its flags.
		{"envguide/etcd", "--name", "etcd-1", "/opt/etcd/cfg/etcd.conf", "ETCD_NAME", false},
		{"envguide/etcd", "--initial-cluster", "etcd-1=https://192.168.31.71:2380,etcd-2=https://192.168.31.72:2380,etcd-3=https://192.168.31.73:2380", "/opt/etcd/cfg/etcd.conf", "ETCD_INITIAL_CLUSTER", false},
		{"envguide/etcd", "--cert-file", "/opt/etcd/ssl/server.pem", "/opt/etcd/cfg/etcd.conf", "ETCD_CERT_FILE", false},
		{"envguide/etcd", "--peer-key-file", "/opt/etcd/ssl/server-key.pem", "/opt/etcd/cfg/etcd.conf", "ETCD_PEER_KEY_FILE", false},
		{"envguide/etcd", "--advertise-client-urls", "https://192.168.31.71:2379", "/opt/etcd/cfg/etcd.conf", "ETCD_ADVERTISE_CLIENT_URLS", false},
		{"envguide/etcd", "--logger", "zap", "/usr/lib/systemd/system/etcd.service", "", false},
		// One $KUBE_APISERVER_OPTS word is split at whitespace into every flag.
		{"envguide/kube-apiserver", "--etcd-servers", "https://192.168.31.71:2379,https://192.168.31.72:2379,https://192.168.31.73:2379", "/opt/kubernetes/cfg/kube-apiserver.conf", "KUBE_APISERVER_OPTS", false},
		{"envguide/kube-apiserver", "--tls-cert-file", "/opt/kubernetes/ssl/server.pem", "/opt/kubernetes/cfg/kube-apiserver.conf", "KUBE_APISERVER_OPTS", false},
		{"envguide/kube-apiserver", "--audit-log-path", "/opt/kubernetes/logs/k8s-audit.log", "/opt/kubernetes/cfg/kube-apiserver.conf", "KUBE_APISERVER_OPTS", false},
		// With a config file etcd takes its flags from the YAML alone.
		{"etcdyaml/etcd", "--config-file", "/etc/etcd/etcd.config.yml", "/etc/systemd/system/etcd.service", "", false},
		{"etcdyaml/etcd", "--initial-cluster", "k8s-master01=https://192.168.1.61:2380,k8s-master02=https://192.168.1.62:2380,k8s-master03=https://192.168.1.63:2380", "/etc/etcd/etcd.config.yml", "", false},
		{"etcdyaml/etcd", "--name", "k8s-master01", "/etc/etcd/etcd.config.yml", "", false},
		{"etcdyaml/etcd", "--data-dir", "/var/lib/etcd", "/etc/etcd/etcd.config.yml", "", false},
		{"etcdyaml/etcd", "--cert-file", "/etc/kubernetes/pki/etcd/etcd.pem", "/etc/etcd/etcd.config.yml", "", false},
		{"etcdyaml/etcd", "--peer-cert-file", "/etc/kubernetes/pki/etcd/etcd.pem", "/etc/etcd/etcd.config.yml", "", false},
		{"etcdyaml/etcd", "--peer-trusted-ca-file", "/etc/kubernetes/pki/etcd/etcd-ca.pem", "/etc/etcd/etcd.config.yml", "", false},
		{"hardway/etcd", "--initial-cluster", "controller-0=https://10.240.0.10:2380,controller-1=https://10.240.0.11:2380,controller-2=https://10.240.0.12:2380", "/etc/systemd/system/etcd.service", "", true},
		{"hardway/etcd", "--peer-cert-file", "/etc/etcd/kubernetes.pem", "/etc/systemd/system/etcd.service", "", false},
		// kubespray: unquoted ETCD_* values in /etc/etcd.env, per-member certificates.
		{"kubespray/etcd", "--cert-file", "/etc/ssl/etcd/ssl/member-node1.pem", "/etc/etcd.env", "ETCD_CERT_FILE", false},
		{"kubespray/etcd", "--initial-cluster", "etcd1=https://10.0.0.1:2380,etcd2=https://10.0.0.2:2380,etcd3=https://10.0.0.3:2380", "/etc/etcd.env", "ETCD_INITIAL_CLUSTER", false},
		{"hardway/kube-apiserver", "--etcd-servers", "https://10.240.0.10:2379,https://10.240.0.11:2379,https://10.240.0.12:2379", "/etc/systemd/system/kube-apiserver.service", "", false},
	}
	for _, c := range cases {
		t.Run(c.fixture+c.flag, func(t *testing.T) {
			u := fixtureByName(t, c.fixture).read(t)
			f, ok := u.Flag(c.flag)
			if !ok {
				t.Fatalf("flag %s not found; flags: %v", c.flag, u.Flags)
			}
			if f.Value != c.value || f.File != c.file || f.Var != c.varName || f.Separate != c.separate {
				t.Errorf("got %+v, want value %q file %s var %q separate %v", f, c.value, c.file, c.varName, c.separate)
			}
			// Line must point at the value's text.
			lines := strings.Split(u.Files[f.File], "\n")
			if f.Value != "" && f.Editable() == nil && !strings.Contains(lines[f.Line-1], f.Value) {
				t.Errorf("line %d of %s is %q, does not hold %q", f.Line, f.File, lines[f.Line-1], f.Value)
			}
		})
	}
	// The packaged ExecStart in the fragment is reset by the drop-in: its --v=0 is gone.
	u := fixtureByName(t, "dropin/kube-apiserver").read(t)
	if f, _ := u.Flag("--v"); f.Value != "2" {
		t.Errorf("dropin: --v = %q, want the drop-in's 2", f.Value)
	}
	// A comment inside the continuation is skipped, not taken as an argument.
	u = fixtureByName(t, "comments/kube-apiserver").read(t)
	for _, a := range u.Args {
		if strings.HasPrefix(a, "#") || strings.HasPrefix(a, ";") || a == "etcd" {
			t.Errorf("comments: comment text %q became an argument", a)
		}
	}
}

// TestAgreesWithGoSystemd checks our ExecStart against go-systemd's parser on the files it
// can read (no comment inside a continuation, no variables).
func TestAgreesWithGoSystemd(t *testing.T) {
	for _, name := range []string{"seed003/kube-apiserver", "seed003/kube-etcd", "kubeasz/kube-apiserver", "kubeasz/etcd"} {
		f := fixtureByName(t, name)
		u := f.read(t)
		opts, err := unit.DeserializeOptions(strings.NewReader(u.Files[f.fragment]))
		if err != nil {
			t.Fatalf("%s: go-systemd: %v", name, err)
		}
		var exec string
		for _, o := range opts {
			if o.Section == "Service" && o.Name == "ExecStart" {
				exec = o.Value
			}
		}
		if got, want := u.ExecStart, strings.Join(strings.Fields(strings.ReplaceAll(exec, "\\\n", " ")), " "); got != want {
			t.Errorf("%s: ExecStart\n got %s\nwant %s", name, got, want)
		}
	}
}

type edit struct {
	fixture string
	flag    string
	value   string
	file    string
}

var edits = []edit{
	{"seed003/kube-apiserver", "--etcd-servers", "https://172.72.0.95:2379", "/etc/systemd/system/kube-apiserver.service"},
	{"seed003/kube-apiserver", "--apiserver-count", "1", "/etc/systemd/system/kube-apiserver.service"},
	{"seed003/kube-etcd", "--initial-cluster", "172.72.0.95=https://172.72.0.95:2380", "/etc/systemd/system/kube-etcd.service"},
	{"kubeasz/kube-apiserver", "--etcd-servers", "https://192.168.1.1:2379", "/etc/systemd/system/kube-apiserver.service"},
	{"kubeasz/kube-apiserver", "--requestheader-allowed-names", "front-proxy-client", "/etc/systemd/system/kube-apiserver.service"},
	{"kubeasz/etcd", "--initial-cluster", "etcd-192.168.1.1=https://192.168.1.1:2380", "/etc/systemd/system/etcd.service"},
	{"envfile/kube-apiserver", "--etcd-servers", "https://10.10.0.11:2379", "/etc/kubernetes/apiserver"},
	{"envfile/kube-apiserver", "--apiserver-count", "1", "/etc/kubernetes/apiserver"},
	{"dropin/kube-apiserver", "--etcd-servers", "https://10.20.0.1:2379", "/etc/systemd/system/kube-apiserver.service.d/10-flags.conf"},
	{"dropin/kube-apiserver", "--apiserver-count", "1", "/etc/systemd/system/kube-apiserver.service.d/10-flags.conf"},
	{"dropin/kube-apiserver", "--etcd-cafile", "/etc/kubernetes/pki/etcd/ca-2.crt", "/etc/systemd/system/kube-apiserver.service.d/10-flags.conf"},
	{"comments/kube-apiserver", "--etcd-servers", "https://10.30.0.1:2379", "/etc/systemd/system/kube-apiserver.service"},
	{"comments/kube-apiserver", "--apiserver-count", "1", "/etc/systemd/system/kube-apiserver.service"},
	{"comments/kube-apiserver", "--tls-cert-file", "/etc/kubernetes/ssl/apiserver-2.pem", "/etc/systemd/system/kube-apiserver.service"},
	// Where the guides keep them: the ETCD_* variable, the *_OPTS string, the YAML key.
	{"envguide/etcd", "--initial-cluster", "etcd-1=https://192.168.31.71:2380", "/opt/etcd/cfg/etcd.conf"},
	{"envguide/etcd", "--initial-cluster-state", "existing", "/opt/etcd/cfg/etcd.conf"},
	{"envguide/kube-apiserver", "--etcd-servers", "https://192.168.31.71:2379", "/opt/kubernetes/cfg/kube-apiserver.conf"},
	{"etcdyaml/etcd", "--initial-cluster", "k8s-master01=https://192.168.1.61:2380", "/etc/etcd/etcd.config.yml"},
	{"etcdyaml/etcd", "--data-dir", "/var/lib/etcd2", "/etc/etcd/etcd.config.yml"},
	{"kubespray/etcd", "--initial-cluster", "etcd1=https://10.0.0.1:2380", "/etc/etcd.env"},
	{"hardway/etcd", "--initial-cluster", "controller-0=https://10.240.0.10:2380", "/etc/systemd/system/etcd.service"},
	{"hardway/kube-apiserver", "--etcd-servers", "https://10.240.0.10:2379", "/etc/systemd/system/kube-apiserver.service"},
	{"kubespray/etcd", "--initial-cluster", "etcd1=https://10.0.0.1:2380", "/etc/etcd.env"},
}

// lineDiff returns the lines that differ between two texts of the same line count.
func lineDiff(t *testing.T, before, after string) (n []int, b, a []string) {
	t.Helper()
	bl, al := strings.Split(before, "\n"), strings.Split(after, "\n")
	if len(bl) != len(al) {
		t.Fatalf("line count changed from %d to %d", len(bl), len(al))
	}
	for i := range bl {
		if bl[i] != al[i] {
			n, b, a = append(n, i+1), append(b, bl[i]), append(a, al[i])
		}
	}
	return n, b, a
}

func TestSetFlag(t *testing.T) {
	for _, e := range edits {
		t.Run(e.fixture+e.flag, func(t *testing.T) {
			u := fixtureByName(t, e.fixture).read(t)
			old, _ := u.Flag(e.flag)
			changes, err := u.SetFlag("m1", e.flag, e.value)
			if err != nil {
				t.Fatal(err)
			}
			if len(changes) != 1 || changes[0].Path != e.file || changes[0].Host != "m1" {
				t.Fatalf("changes %+v, want one change of %s on m1", changes, e.file)
			}
			c := changes[0]
			if c.Before != u.Files[e.file] {
				t.Fatal("Before is not the file as read")
			}
			// Exactly one line differs, and only by the value.
			nums, bl, al := lineDiff(t, c.Before, c.After)
			if len(nums) != 1 {
				t.Fatalf("%d lines changed (%v), want 1", len(nums), nums)
			}
			if nums[0] != old.Line {
				t.Errorf("changed line %d, flag is on line %d", nums[0], old.Line)
			}
			if want := replaceValue(bl[0], old, e.value); al[0] != want {
				t.Errorf("line %d:\n got %q\nwant %q", nums[0], al[0], want)
			}
			// The result parses to the new value and the same other flags.
			nu, err := u.With(map[string]string{c.Path: c.After})
			if err != nil {
				t.Fatal(err)
			}
			if f, _ := nu.Flag(e.flag); f.Value != e.value {
				t.Errorf("after the edit %s = %q", e.flag, f.Value)
			}
			for i := range u.Flags {
				if u.Flags[i].Name != e.flag && u.Flags[i].Value != nu.Flags[i].Value {
					t.Errorf("%s changed from %q to %q", u.Flags[i].Name, u.Flags[i].Value, nu.Flags[i].Value)
				}
			}
			// Idempotent: the same value again is no change.
			again, err := nu.SetFlag("m1", e.flag, e.value)
			if err != nil || len(again) != 0 {
				t.Errorf("setting the same value again: %d changes, %v", len(again), err)
			}
			golden.Check(t, filepath.Join("testdata", strings.Split(e.fixture, "/")[0],
				strings.Split(e.fixture, "/")[1]+"."+strings.TrimLeft(e.flag, "-")+".diff.golden"),
				fmt.Sprintf("%s:%d\n-%s\n+%s\n", c.Path, nums[0], bl[0], al[0]))
		})
	}
}

// replaceValue is the expected edit of a line: the flag's old value, right after the flag's
// name or the assignment of the variable it comes from, becomes the new one.
func replaceValue(line string, f unitfile.Flag, value string) string {
	anchor := f.Name
	if f.Var != "" && !strings.Contains(line, f.Name) {
		anchor = f.Var + "="
	}
	if f.Key != "" {
		parts := strings.Split(f.Key, ".")
		anchor = parts[len(parts)-1] + ":"
	}
	i := strings.Index(line, anchor)
	if i < 0 {
		return "(no " + anchor + " on the line)"
	}
	i += len(anchor)
	j := strings.Index(line[i:], f.Value)
	if f.Value == "" {
		j = strings.Index(line[i:], "=") + 1
	}
	return line[:i+j] + value + line[i+j+len(f.Value):]
}

func TestSetFlagsCompose(t *testing.T) {
	u := fixtureByName(t, "seed003/kube-apiserver").read(t)
	changes, err := u.SetFlags("m1", map[string]string{
		"--etcd-servers":    "https://172.72.0.95:2379",
		"--apiserver-count": "1",
		"--v":               "2", // unchanged
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 {
		t.Fatalf("%d changes, want 1 file", len(changes))
	}
	nums, _, _ := lineDiff(t, changes[0].Before, changes[0].After)
	if len(nums) != 2 {
		t.Errorf("changed lines %v, want two", nums)
	}
	nu, err := u.With(map[string]string{changes[0].Path: changes[0].After})
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := nu.Flag("etcd-servers"); f.Value != "https://172.72.0.95:2379" {
		t.Errorf("etcd-servers = %q", f.Value)
	}
	if f, _ := nu.Flag("apiserver-count"); f.Value != "1" {
		t.Errorf("apiserver-count = %q", f.Value)
	}
}

func TestSetFlagRefusals(t *testing.T) {
	u := fixtureByName(t, "comments/kube-apiserver").read(t)
	if _, err := u.SetFlag("m1", "--no-such-flag", "x"); !errors.Is(err, unitfile.ErrFlagNotFound) {
		t.Errorf("missing flag: %v, want ErrFlagNotFound", err)
	}
	if _, err := u.SetFlag("m1", "--audit-log-path", "/var/log/a.log"); !errors.Is(err, unitfile.ErrNotEditable) {
		t.Errorf("value written with %%%%: %v, want ErrNotEditable", err)
	}
	for _, bad := range []string{"a b", `a"b`, "a$b", "a%b", `a\b`, "a;b", "a#b", "a'b"} {
		if _, err := u.SetFlag("m1", "--etcd-servers", bad); !errors.Is(err, unitfile.ErrUnsafeValue) {
			t.Errorf("value %q: %v, want ErrUnsafeValue", bad, err)
		}
	}

	rep := "[Service]\nExecStart=/bin/kube-apiserver --etcd-servers=https://a:2379 \\\n  --etcd-servers=https://b:2379\n"
	ru, err := unitfile.Parse("kube-apiserver", "/u", map[string]string{"/u": rep}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ru.SetFlag("m1", "--etcd-servers", "https://a:2379"); !errors.Is(err, unitfile.ErrFlagRepeated) {
		t.Errorf("repeated flag: %v, want ErrFlagRepeated", err)
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]struct {
		files map[string]string
		drop  []string
		env   map[string]string
	}{
		"no ExecStart": {files: map[string]string{"/u": "[Service]\nType=notify\n"}},
		"two ExecStart without reset": {
			files: map[string]string{"/u": "[Service]\nExecStart=/bin/a\n", "/d": "[Service]\nExecStart=/bin/b\n"},
			drop:  []string{"/d"},
		},
		"required EnvironmentFile missing": {files: map[string]string{"/u": "[Service]\nEnvironmentFile=/etc/x\nExecStart=/bin/a $X\n"}},
		"unbalanced quote":                 {files: map[string]string{"/u": "[Service]\nExecStart=/bin/a \"--x=1\n"}},
	}
	for name, c := range cases {
		if _, err := unitfile.Parse("x", "/u", c.files, c.drop, c.env); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// An optional EnvironmentFile may be missing.
	u, err := unitfile.Parse("x", "/u", map[string]string{"/u": "[Service]\nEnvironmentFile=-/etc/x\nExecStart=/bin/a $X --v=1\n"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !u.EnvironmentFiles[0].Missing || len(u.Flags) != 1 {
		t.Errorf("optional missing file: %+v", u)
	}
}

func TestLongLine(t *testing.T) {
	// go-systemd refuses lines over 2048 bytes; systemd and this package do not.
	long := strings.Repeat("https://10.0.0.1:2379,", 120) + "https://10.0.0.2:2379"
	content := "[Service]\nExecStart=/bin/kube-apiserver --etcd-servers=" + long + " --v=2\n"
	u, err := unitfile.Parse("kube-apiserver", "/u", map[string]string{"/u": content}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := u.SetFlag("h", "--etcd-servers", "https://10.0.0.2:2379")
	if err != nil {
		t.Fatal(err)
	}
	if want := "[Service]\nExecStart=/bin/kube-apiserver --etcd-servers=https://10.0.0.2:2379 --v=2\n"; changes[0].After != want {
		t.Errorf("got %q", changes[0].After)
	}
}

// Lines at and around systemd's LONG_LINE_MAX, single and joined from continuations: the
// verdicts are those of systemd-analyze verify here (a line of 1 MiB or more, a joined line
// over 1 MiB, leading blanks counted, fail with ENOBUFS), and are checked against it when
// it is installed.
func TestLineOverSystemdLimit(t *testing.T) {
	const limit = unitfile.LongLineMax
	single := func(n int) string {
		head := "ExecStart=/bin/true "
		return "[Service]\n" + head + strings.Repeat("x", n-len(head)) + "\n"
	}
	joined := func(a, b int, lead string) string {
		head := "ExecStart=/bin/true "
		return "[Service]\n" + head + strings.Repeat("y", a-len(head)-2) + " \\\n" + lead + strings.Repeat("z", b) + "\n"
	}
	cases := []struct {
		name, content string
		wantLine      string // "" when systemd loads the unit
	}{
		{"one byte under", single(limit - 1), ""},
		{"at the limit", single(limit), "line 2: 1048576 bytes long"},
		{"a comment at the limit", "[Service]\n#" + strings.Repeat("c", limit-1) + "\nExecStart=/bin/true\n", "line 2: 1048576 bytes long"},
		{"joined at the limit", joined(600000, limit-600000, ""), ""},
		{"joined one byte over", joined(600000, limit-600000+1, ""), "line 2: continued through line 3, 1048577 bytes joined"},
		{"joined over with leading blanks", joined(600000, limit-600000-1, "  "), "line 2: continued through line 3"},
	}
	analyze, _ := exec.LookPath("systemd-analyze")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const frag = "/etc/systemd/system/long.service"
			_, err := unitfile.Parse("long", frag, map[string]string{frag: tc.content}, nil, nil)
			switch {
			case tc.wantLine == "" && err != nil:
				t.Errorf("Parse: %v, want it accepted", err)
			case tc.wantLine != "" && err == nil:
				t.Errorf("Parse accepted it, want %q", tc.wantLine)
			case tc.wantLine != "" && !strings.Contains(err.Error(), frag+": "+tc.wantLine):
				t.Errorf("Parse: %v, want it to name %s and %q", err, frag, tc.wantLine)
			}
			if analyze == "" {
				return
			}
			file := filepath.Join(t.TempDir(), "long.service")
			if err := os.WriteFile(file, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			out, _ := exec.Command(analyze, "verify", "--man=no", file).CombinedOutput()
			if refused := strings.Contains(string(out), "No buffer space available"); refused != (tc.wantLine != "") {
				t.Errorf("systemd-analyze verify refused=%v, want %v:\n%.300s", refused, tc.wantLine != "", out)
			}
		})
	}
}

// etcd takes ETCD_<FLAG> from its environment for every flag not on its command line; any
// other program does not, and a variable only reached through ${VAR} is the command line's.
func TestEtcdEnvironmentFlags(t *testing.T) {
	const frag = "/etc/systemd/system/etcd.service"
	env := "ETCD_NAME=m1\nETCD_INITIAL_CLUSTER=m1=https://10.0.0.1:2380,m2=https://10.0.0.2:2380\nETCDCTL_API=3\n"
	parse := func(t *testing.T, exec string) *unitfile.Unit {
		t.Helper()
		unit := "[Service]\nEnvironmentFile=/etc/etcd/etcd.conf\nExecStart=" + exec + "\n"
		u, err := unitfile.Parse("etcd", frag, map[string]string{frag: unit}, nil, map[string]string{"/etc/etcd/etcd.conf": env})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	t.Run("etcd reads them", func(t *testing.T) {
		u := parse(t, "/usr/bin/etcd")
		f, ok := u.Flag("--initial-cluster")
		if !ok || !f.FromEnv || f.Var != "ETCD_INITIAL_CLUSTER" || f.Line != 2 {
			t.Fatalf("--initial-cluster = %+v, %v; want it from ETCD_INITIAL_CLUSTER on line 2", f, ok)
		}
		// ETCDCTL_API is etcdctl's, not an etcd flag.
		for _, f := range u.Flags {
			if strings.HasPrefix(f.Name, "--ctl") || f.Var == "ETCDCTL_API" {
				t.Errorf("ETCDCTL_API became %s", f.Name)
			}
		}
	})

	t.Run("other programs do not", func(t *testing.T) {
		u := parse(t, "/usr/bin/kube-apiserver --v=2")
		if _, ok := u.Flag("--initial-cluster"); ok {
			t.Error("kube-apiserver got --initial-cluster from ETCD_INITIAL_CLUSTER")
		}
	})

	t.Run("one value reached twice is one edit", func(t *testing.T) {
		// The older guides: --initial-cluster=${ETCD_INITIAL_CLUSTER} with the variable in the
		// file etcd also reads. Both are the same bytes, so there is one place to edit.
		u := parse(t, "/usr/bin/etcd --name=${ETCD_NAME} --initial-cluster=${ETCD_INITIAL_CLUSTER}")
		changes, err := u.SetFlag("m1", "--initial-cluster", "m1=https://10.0.0.1:2380")
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) != 1 || changes[0].Path != "/etc/etcd/etcd.conf" ||
			!strings.Contains(changes[0].After, "\nETCD_INITIAL_CLUSTER=m1=https://10.0.0.1:2380\n") {
			t.Fatalf("changes %+v", changes)
		}
	})

	t.Run("a flag on the command line and in the environment is refused", func(t *testing.T) {
		// etcd 3.4+ exits on this conflict; which of the two was meant is the operator's call.
		u := parse(t, "/usr/bin/etcd --initial-cluster=m1=https://10.0.0.1:2380")
		if f, _ := u.Flag("--initial-cluster"); f.FromEnv {
			t.Error("Flag returned the environment's value over the command line's")
		}
		_, err := u.SetFlag("m1", "--initial-cluster", "m1=https://10.0.0.9:2380")
		if !errors.Is(err, unitfile.ErrFlagRepeated) || !strings.Contains(err.Error(), "/etc/etcd/etcd.conf:2") {
			t.Errorf("got %v, want ErrFlagRepeated naming /etc/etcd/etcd.conf:2", err)
		}
	})

	t.Run("Environment= counts too", func(t *testing.T) {
		unit := "[Service]\nEnvironment=\"ETCD_INITIAL_CLUSTER_STATE=new\"\nExecStart=/usr/bin/etcd\n"
		u, err := unitfile.Parse("etcd", frag, map[string]string{frag: unit}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		changes, err := u.SetFlag("m1", "--initial-cluster-state", "existing")
		if err != nil {
			t.Fatal(err)
		}
		if want := "[Service]\nEnvironment=\"ETCD_INITIAL_CLUSTER_STATE=existing\"\nExecStart=/usr/bin/etcd\n"; len(changes) != 1 || changes[0].After != want {
			t.Errorf("changes %+v", changes)
		}
	})
}

func TestEtcdConfigFile(t *testing.T) {
	const frag = "/etc/systemd/system/etcd.service"
	const cfg = "/etc/etcd/etcd.yml"
	yml := "name: m1\n" +
		"initial-cluster: \"m1=https://10.0.0.1:2380,m2=https://10.0.0.2:2380\"\n" +
		"initial-cluster-state: 'new'\n" +
		"advertise-client-urls: \"https://10.0.0.1:2379\\u002c\"\n" + // an escape: read, not editable
		"client-transport-security:\n  cert-file: /etc/etcd/ssl/server.pem\n  key-file: /etc/etcd/ssl/server-key.pem\n" +
		"peer-transport-security:\n  cert-file: /etc/etcd/ssl/peer.pem\n  peer-client-cert-auth: true\n"
	unit := "[Service]\nEnvironment=ETCD_CONFIG_FILE=" + cfg + " ETCD_NAME=ignored\nExecStart=/usr/local/bin/etcd --name=ignored-too\n"

	// Parse names the file it needs; Read would read it and parse again.
	_, err := unitfile.Parse("etcd", frag, map[string]string{frag: unit}, nil, nil)
	var missing *unitfile.MissingFileError
	if !errors.As(err, &missing) || missing.Path != cfg || missing.Flag != "ETCD_CONFIG_FILE" || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Parse without the config file: %v, want a MissingFileError for %s", err, cfg)
	}

	u, err := unitfile.Parse("etcd", frag, map[string]string{frag: unit}, nil, map[string]string{cfg: yml})
	if err != nil {
		t.Fatal(err)
	}
	if u.ConfigFile != cfg {
		t.Errorf("ConfigFile = %q", u.ConfigFile)
	}
	// etcd ignores every other flag and variable once it has a config file.
	if f, _ := u.Flag("--name"); f.Value != "m1" || f.File != cfg || f.Key != "name" {
		t.Errorf("--name = %+v, want the YAML's m1", f)
	}
	if f, _ := u.Flag("--peer-cert-file"); f.Value != "/etc/etcd/ssl/peer.pem" || f.Line != 9 {
		t.Errorf("--peer-cert-file = %+v", f)
	}
	if _, ok := u.Flag("--peer-client-cert-auth"); ok {
		t.Error("peer-client-cert-auth under peer-transport-security is no etcd key, yet became a flag")
	}
	if f, _ := u.Flag("--advertise-client-urls"); f.Editable() == nil || f.Value != "https://10.0.0.1:2379," {
		t.Errorf("an escaped YAML value: %+v, want it read and not editable", f)
	}

	changes, err := u.SetFlags("m1", map[string]string{"--initial-cluster": "m1=https://10.0.0.1:2380", "--initial-cluster-state": "existing"})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(strings.Replace(yml, "m1=https://10.0.0.1:2380,m2=https://10.0.0.2:2380", "m1=https://10.0.0.1:2380", 1), "'new'", "'existing'", 1)
	if len(changes) != 1 || changes[0].Path != cfg || changes[0].After != want {
		t.Fatalf("changes %+v\nwant one change of %s to\n%s", changes, cfg, want)
	}
	if _, err := u.SetFlag("m1", "--advertise-client-urls", "https://10.0.0.1:2379"); !errors.Is(err, unitfile.ErrNotEditable) {
		t.Errorf("editing an escaped value: %v, want ErrNotEditable", err)
	}

	// Read finds the file through the unit.
	h := &unitfiletest.DirHost{HostName: "m1", Root: filepath.Join("testdata", "etcdyaml", "root"),
		Statuses: map[string]host.UnitStatus{"etcd.service": {LoadState: "loaded", FragmentPath: "/etc/systemd/system/etcd.service"}}}
	ru, err := unitfile.Read(context.Background(), h, "etcd")
	if err != nil || ru.ConfigFile != "/etc/etcd/etcd.config.yml" {
		t.Fatalf("Read: %v, config file %q", err, ru.ConfigFile)
	}
	h.Root = t.TempDir()
	if err := os.MkdirAll(filepath.Join(h.Root, "etc/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.Root, "etc/systemd/system/etcd.service"), []byte(ru.Files[ru.FragmentPath]), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := unitfile.Read(context.Background(), h, "etcd"); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "/etc/etcd/etcd.config.yml") {
		t.Errorf("Read with the config file missing: %v, want it named and not-exist", err)
	}
}

// A variable the unit exports without it being a flag is still there to be asked for.
func TestEnv(t *testing.T) {
	u := fixtureByName(t, "kubespray/etcd").read(t)
	if v, ok := u.Env("ETCDCTL_CERT"); !ok || v != "/etc/ssl/etcd/ssl/admin-node1.pem" {
		t.Errorf("ETCDCTL_CERT = %q, %v", v, ok)
	}
	if _, ok := u.Env("NOPE"); ok {
		t.Error("an unset variable is reported set")
	}
}
