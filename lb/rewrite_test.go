package lb

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/internal/golden"
)

const streamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

// loadCase reads testdata/<dir>/in into a files map keyed by the virtual root the config
// lives under on a node.
func loadCase(t testing.TB, dir, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	in := filepath.Join("testdata", dir, "in")
	err := filepath.WalkDir(in, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(in, p)
		files[path.Join(root, filepath.ToSlash(rel))] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// nginxTestFiles runs the real `nginx -t` on files (rooted at root) copied into a temp
// prefix: the node's absolute paths are moved under it, and the main file gets the stream
// module and a pid and error log of its own.
func nginxTestFiles(t *testing.T, files map[string]string, root, main string) {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		rel := strings.TrimPrefix(p, root+"/")
		content = strings.ReplaceAll(content, root+"/", dir+"/")
		if p == main {
			content = fmt.Sprintf("load_module %s;\npid %s/nginx.pid;\nerror_log %s/error.log;\n", streamModule, dir, dir) + content
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	rel := strings.TrimPrefix(main, root+"/")
	out, err := exec.Command("nginx", "-t", "-p", dir+"/", "-c", filepath.Join(dir, rel)).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t rejected %s: %v\n%s", main, err, out)
	}
}

type rwCase struct {
	name       string
	dir        string // testdata folder; name when empty
	root, main string
	apiservers []string
	leaving    []string
	mode       Mode
	changed    int // files expected to change
	wantErr    error
}

var seedAPI = []string{"172.72.0.95:6443", "172.72.0.96:6443", "172.72.0.97:6443"}
var labAPI = []string{"10.88.0.11:6443", "10.88.0.12:6443", "10.88.0.13:6443"}

var rwCases = []rwCase{
	{name: "seed003", root: "/approot/data/k8s/kube-nginx", main: "kube-nginx.conf", apiservers: seedAPI,
		leaving: []string{"172.72.0.96:6443", "172.72.0.97:6443"}, changed: 1},
	{name: "already-down", root: "/approot/data/k8s/kube-nginx", main: "kube-nginx.conf", apiservers: seedAPI,
		leaving: []string{"172.72.0.96:6443", "172.72.0.97:6443"}, changed: 0},
	{name: "no-live-server-left", dir: "already-down", root: "/approot/data/k8s/kube-nginx", main: "kube-nginx.conf",
		apiservers: seedAPI, leaving: []string{"172.72.0.95:6443"}, wantErr: ErrNoUpstreamLeft},
	{name: "kubeasz", root: "/etc/kube-lb", main: "conf/kube-lb.conf", apiservers: labAPI,
		leaving: []string{"10.88.0.13:6443"}, changed: 1},
	{name: "kubeasz-remove", root: "/etc/kube-lb", main: "conf/kube-lb.conf", apiservers: labAPI,
		leaving: []string{"10.88.0.12:6443", "10.88.0.13:6443"}, mode: Remove, changed: 1},
	{name: "comments", root: "/etc/nginx", main: "nginx.conf", apiservers: labAPI,
		leaving: []string{"10.88.0.12:6443", "10.88.0.13:6443"}, changed: 1},
	{name: "comments-remove", root: "/etc/nginx", main: "nginx.conf", apiservers: labAPI,
		leaving: []string{"10.88.0.12:6443", "10.88.0.13:6443"}, mode: Remove, changed: 1},
	{name: "http", root: "/etc/nginx", main: "nginx.conf", apiservers: labAPI,
		leaving: []string{"10.88.0.12:6443", "10.88.0.13:6443"}, changed: 1},
	{name: "includes", root: "/etc/nginx", main: "nginx.conf", apiservers: labAPI,
		leaving: []string{"10.88.0.13:6443"}, changed: 1},
	{name: "two-upstreams", root: "/etc/nginx", main: "nginx.conf", apiservers: labAPI,
		leaving: []string{"10.88.0.12:6443"}, changed: 1},
}

func TestParseAndRewrite(t *testing.T) {
	for _, tc := range rwCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir
			if dir == "" {
				dir = tc.name
			}
			files := loadCase(t, dir, tc.root)
			main := path.Join(tc.root, tc.main)
			cfg, err := Parse("node-1", main, files, tc.apiservers)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(cfg.Upstreams) != 1 {
				t.Fatalf("found %d apiserver upstreams, want 1: %+v", len(cfg.Upstreams), cfg.Upstreams)
			}
			parsed, _ := json.MarshalIndent(struct {
				Upstreams []Upstream `json:"upstreams"`
				Listen    string     `json:"listen"`
			}{cfg.Upstreams, cfg.Listen}, "", "  ")
			golden.Check(t, filepath.Join("testdata", dir, "parse.golden.json"), string(parsed)+"\n")

			changes, err := Rewrite(cfg, tc.leaving, tc.mode)
			if tc.wantErr != nil {
				var nl *NoUpstreamLeftError
				if !errors.Is(err, tc.wantErr) || !errors.As(err, &nl) || nl.Node != "node-1" || nl.File != main {
					t.Fatalf("Rewrite error = %v, want %v naming node-1 and %s", err, tc.wantErr, main)
				}
				return
			}
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			if len(changes) != tc.changed {
				t.Fatalf("%d files changed, want %d", len(changes), tc.changed)
			}
			after := maps(files)
			var diffs string
			for _, c := range changes {
				if c.Host != "node-1" || c.Before != files[c.Path] {
					t.Fatalf("change %s: host %q, before differs from the file read", c.Path, c.Host)
				}
				checkOnlyLeavingLines(t, cfg, c, tc.leaving, tc.mode)
				after[c.Path] = c.After
				golden.Check(t, filepath.Join("testdata", dir, "out", strings.TrimPrefix(c.Path, tc.root+"/")), c.After)
			}
			for _, g := range GroupDiffs(map[string][]host.FileChange{"node-1": changes}) {
				diffs += g.Diff
			}
			if tc.changed > 0 {
				golden.Check(t, filepath.Join("testdata", dir, "diff.golden"), diffs)
			}
			nginxTestFiles(t, files, tc.root, main)
			nginxTestFiles(t, after, tc.root, main)

			// Idempotent: the rewritten config needs no further change.
			cfg2, err := Parse("node-1", main, after, tc.apiservers)
			if err != nil {
				t.Fatalf("Parse after rewrite: %v", err)
			}
			if again, err := Rewrite(cfg2, tc.leaving, tc.mode); err != nil || len(again) != 0 {
				t.Fatalf("second Rewrite changed %d files (err %v)", len(again), err)
			}
		})
	}
}

// The seed's own hand-edited result is what the rewrite of its original must give.
func TestSeed003MatchesTheSeedsEdit(t *testing.T) {
	root := "/approot/data/k8s/kube-nginx"
	files := loadCase(t, "seed003", root)
	want := loadCase(t, "already-down", root)[root+"/kube-nginx.conf"]
	cfg, err := Parse("n", root+"/kube-nginx.conf", files, seedAPI)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := Rewrite(cfg, []string{"172.72.0.96:6443", "172.72.0.97:6443"}, MarkDown)
	if err != nil || len(ch) != 1 {
		t.Fatalf("Rewrite: %v, %d changes", err, len(ch))
	}
	if ch[0].After != want {
		t.Fatalf("rewrite differs from the seed's edit:\n%s", ch[0].After)
	}
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// checkOnlyLeavingLines compares before and after line by line: only the leaving servers'
// lines may differ, by " down" added (MarkDown) or by being gone (Remove).
func checkOnlyLeavingLines(t *testing.T, cfg NodeConfig, c host.FileChange, leaving []string, mode Mode) {
	t.Helper()
	want := map[int]bool{} // 1-based lines of leaving servers in this file
	for _, u := range cfg.Upstreams {
		for _, s := range u.Servers {
			if s.File == c.Path && slices.Contains(leaving, s.Address) && (mode == Remove || !s.Down) {
				want[s.Line] = true
			}
		}
	}
	before := strings.SplitAfter(c.Before, "\n")
	after := strings.SplitAfter(c.After, "\n")
	if mode == Remove {
		var expect []string
		for i, l := range before {
			if !want[i+1] {
				expect = append(expect, l)
			}
		}
		if !slices.Equal(expect, after) {
			t.Fatalf("%s: after is not before minus lines %v:\n%s", c.Path, want, c.After)
		}
		return
	}
	if len(before) != len(after) {
		t.Fatalf("%s: %d lines before, %d after", c.Path, len(before), len(after))
	}
	got := map[int]bool{}
	for i := range before {
		if before[i] == after[i] {
			continue
		}
		got[i+1] = true
		if strings.Replace(after[i], " down", "", 1) != before[i] {
			t.Errorf("%s:%d: changed by more than \" down\":\n-%s+%s", c.Path, i+1, before[i], after[i])
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: lines changed %v, want %v", c.Path, got, want)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"unterminated block", "stream {\n upstream a {\n server 10.0.0.1:6443;\n", "/etc/n.conf"},
		{"missing include", "stream {\n include missing.conf;\n}\n", "/etc/n.conf:2: include missing.conf"},
		{"missing semicolon", "stream {\n upstream a {\n server 10.0.0.1:6443\n }\n}\n", "/etc/n.conf:4"},
		{"missing semicolon swallows the next server", "stream {\n upstream a {\n server 10.0.0.1:6443 max_fails=3\n server 10.0.0.2:6443;\n }\n}\n",
			`/etc/n.conf:3: upstream a: server 10.0.0.1:6443: invalid parameter "server" on line 4 (is the ';' missing at the end of line 3?)`},
		{"unknown server parameter", "stream {\n upstream a {\n server 10.0.0.1:6443 max_fail=3;\n }\n}\n",
			`/etc/n.conf:3: upstream a: server 10.0.0.1:6443: invalid parameter "max_fail=3" (nginx -t would refuse it)`},
		{"server parameter without its value", "stream {\n upstream other {\n server 10.0.0.9:5000 weight=;\n }\n}\n",
			`/etc/n.conf:3: upstream other: server 10.0.0.9:5000: invalid parameter "weight="`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("n", "/etc/n.conf", map[string]string{"/etc/n.conf": tt.text}, []string{"10.0.0.1:6443"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDialAddr(t *testing.T) {
	for in, want := range map[string]string{
		"8443": "127.0.0.1:8443", "*:8443": "127.0.0.1:8443", "0.0.0.0:8443": "127.0.0.1:8443",
		"127.0.0.1:6443": "127.0.0.1:6443", "[::]:8443": "[::1]:8443", "10.0.0.5:8443": "10.0.0.5:8443",
		"unix:/run/x.sock": "",
	} {
		if got := dialAddr(in); got != want {
			t.Errorf("dialAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestGroupDiffs(t *testing.T) {
	a := host.FileChange{Path: "/etc/n.conf", Before: "x\ny\n", After: "x\ny down\n"}
	b := host.FileChange{Path: "/etc/n.conf", Before: "x\nz\n", After: "x\nz down\n"}
	groups := GroupDiffs(map[string][]host.FileChange{
		"w3": {a}, "w1": {a}, "w2": {b}, "w4": nil,
	})
	if len(groups) != 3 {
		t.Fatalf("%d groups, want 3: %+v", len(groups), groups)
	}
	if !slices.Equal(groups[0].Hosts, []string{"w1", "w3"}) || !strings.Contains(groups[0].Diff, "+y down") {
		t.Errorf("first group %+v", groups[0])
	}
	if !slices.Equal(groups[1].Hosts, []string{"w2"}) || !slices.Equal(groups[2].Hosts, []string{"w4"}) || groups[2].Diff != "" {
		t.Errorf("groups %+v", groups[1:])
	}
}

// The server-parameter check agrees with the real nginx -t on the lines it accepts and refuses.
func TestServerParamsAgreeWithNginx(t *testing.T) {
	requireNginx(t)
	for _, tc := range []struct {
		name, servers string
		ok            bool
	}{
		{"every parameter", "server 10.0.0.1:6443 weight=2 max_conns=10 max_fails=3 fail_timeout=30s backup;\n server 10.0.0.2:6443 down;", true},
		{"unix socket", "server unix:/run/apiserver.sock max_fails=1;", true},
		{"missing semicolon", "server 10.0.0.1:6443 max_fails=3 fail_timeout=30s\n server 10.0.0.2:6443 max_fails=3 fail_timeout=30s;", false},
		{"missing semicolon, no parameters", "server 10.0.0.1:6443\n server 10.0.0.2:6443;", false},
		{"typo", "server 10.0.0.1:6443 fail_timout=30s;", false},
		{"empty value", "server 10.0.0.1:6443 weight=;", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := "events {}\nstream {\n upstream a {\n " + tc.servers + "\n }\n server {\n listen 127.0.0.1:1;\n proxy_pass a;\n }\n}\n"
			_, err := Parse("n", "/etc/nginx/nginx.conf", map[string]string{"/etc/nginx/nginx.conf": conf}, []string{"10.0.0.1:6443"})
			if (err == nil) != tc.ok {
				t.Errorf("Parse: %v, want ok=%v", err, tc.ok)
			}
			dir := t.TempDir()
			file := filepath.Join(dir, "nginx.conf")
			full := fmt.Sprintf("load_module %s;\npid %s/nginx.pid;\nerror_log %s/error.log;\n", streamModule, dir, dir) + conf
			if err := os.WriteFile(file, []byte(full), 0o644); err != nil {
				t.Fatal(err)
			}
			out, nerr := exec.Command("nginx", "-t", "-p", dir+"/", "-c", file).CombinedOutput()
			if (nerr == nil) != tc.ok {
				t.Errorf("nginx -t: %v, want ok=%v\n%s", nerr, tc.ok, out)
			}
		})
	}
}

func TestRequireAPIServer(t *testing.T) {
	const main = "/etc/nginx/nginx.conf"
	for _, tc := range []struct {
		name, conf, found string
	}{
		{"fronts an apiserver", "stream {\n upstream a {\n server 10.0.0.9:5000;\n server 10.0.0.1:6443;\n }\n}\n", ""},
		{"no stream block", "http {\n upstream apiserver {\n server 10.0.0.1:6443;\n }\n}\n", "no stream block"},
		{"other servers only", "stream {\n upstream registry {\n server 10.0.0.9:5000;\n }\n}\n", "its stream upstream registry at /etc/nginx/nginx.conf:2 lists none of the apiservers"},
		{"empty stream block", "stream {\n}\n", "no upstream in its stream block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("w1", main, map[string]string{main: tc.conf}, []string{"10.0.0.1:6443"})
			if err != nil {
				t.Fatal(err)
			}
			err = RequireAPIServer(cfg)
			if tc.found == "" {
				if err != nil {
					t.Fatalf("RequireAPIServer: %v", err)
				}
				return
			}
			var ne *NoAPIServerError
			if !errors.Is(err, ErrNoAPIServer) || !errors.As(err, &ne) || ne.Node != "w1" || ne.File != main {
				t.Fatalf("RequireAPIServer = %v, want a NoAPIServerError naming w1 and %s", err, main)
			}
			if !strings.HasPrefix(err.Error(), "w1: "+main+": ") || !strings.Contains(err.Error(), tc.found) {
				t.Errorf("error %q does not name the node, file and %q", err, tc.found)
			}
			// Parse accepts it, and a rewrite has nothing to do: only RequireAPIServer speaks.
			if ch, err := Rewrite(cfg, []string{"10.0.0.1:6443"}, MarkDown); err != nil || len(ch) != 0 {
				t.Errorf("Rewrite = %d changes, %v; want none and no error", len(ch), err)
			}
		})
	}
}

// Bounded parsing: a config too large, or nested too deep, is refused with a message,
// never parsed into exhaustion.
func TestParseBounded(t *testing.T) {
	deep := strings.Repeat("stream {\n", 100) + strings.Repeat("}\n", 100)
	if _, err := Parse("w1", "/n.conf", map[string]string{"/n.conf": deep}, []string{"10.0.0.1:6443"}); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("100 nested blocks: %v", err)
	}
	big := strings.Repeat("# padding\n", maxConfigBytes/10+1)
	if _, err := Parse("w1", "/n.conf", map[string]string{"/n.conf": big}, []string{"10.0.0.1:6443"}); err == nil || !strings.Contains(err.Error(), "MiB") {
		t.Errorf("oversized config: %v", err)
	}
}
