package lb

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/internal/golden"
)

// haproxyCheck runs the real `haproxy -c` on text: the one on PATH, or else Debian's in the
// lab's rootfs (as root, through chroot); the test is skipped where neither is.
func haproxyCheck(t *testing.T, text string) {
	t.Helper()
	var cmd *exec.Cmd
	if bin, err := exec.LookPath("haproxy"); err == nil {
		f := filepath.Join(t.TempDir(), "haproxy.cfg")
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command(bin, "-c", "-f", f)
	} else {
		home, _ := os.UserHomeDir()
		roots, _ := filepath.Glob(filepath.Join(home, ".cache/mastershrink/rootfs/*/usr/sbin/haproxy"))
		// A rootfs still being built (NAME.tmp) may hold haproxy before its libraries.
		roots = slices.DeleteFunc(roots, func(r string) bool { return strings.Contains(r, ".tmp/") })
		if len(roots) == 0 || os.Geteuid() != 0 {
			t.Log("no haproxy to check the config with (none on PATH, no lab rootfs)")
			return
		}
		root := strings.TrimSuffix(roots[0], "/usr/sbin/haproxy")
		f, err := os.CreateTemp(filepath.Join(root, "tmp"), "mstest-*.cfg")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(f.Name())
		if _, err := f.WriteString(text); err != nil {
			t.Fatal(err)
		}
		f.Close()
		cmd = exec.Command("chroot", root, "/usr/sbin/haproxy", "-c", "-f", "/tmp/"+filepath.Base(f.Name()))
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c rejected the config: %v\n%s\n%s", err, out, text)
	}
}

var hapCases = []struct {
	name     string
	leaving  []string
	mode     Mode
	resolved map[string][]string
	listen   string
}{
	{name: "haproxy-k8s", leaving: []string{"10.88.0.12:6443", "10.88.0.13:6443"}, listen: "127.0.0.1:8443"},
	{name: "haproxy-k8s-remove", leaving: []string{"10.88.0.12:6443", "10.88.0.13:6443"}, mode: Remove, listen: "127.0.0.1:8443"},
	// m2 by name: it is 10.88.0.12 on the node, so it leaves with that address.
	{name: "haproxy-listen", leaving: []string{"10.88.0.12:6443", "10.88.0.13:6443"}, resolved: map[string][]string{"m2": {"10.88.0.12"}}, listen: "127.0.0.1:6443"},
	// default-server disabled in defaults: m3 is down already, m1 and m2 enabled by their own
	// keyword; disabled must come after enabled to win.
	{name: "haproxy-disabled", leaving: []string{"10.88.0.12:6443"}, listen: "127.0.0.1:6443"},
}

func TestHAProxyParseAndRewrite(t *testing.T) {
	const file = "/etc/haproxy/haproxy.cfg"
	for _, tc := range hapCases {
		t.Run(tc.name, func(t *testing.T) {
			in := loadCase(t, tc.name, "/etc/haproxy")[file]
			cfg, err := ParseHAProxy("node-1", file, in, labAPI, tc.resolved)
			if err != nil {
				t.Fatalf("ParseHAProxy: %v", err)
			}
			if len(cfg.Upstreams) != 1 || cfg.Listen != tc.listen || cfg.Kind != KindHAProxy {
				t.Fatalf("upstreams %+v, listen %q (want one, %s)", cfg.Upstreams, cfg.Listen, tc.listen)
			}
			parsed, _ := json.MarshalIndent(struct {
				Upstreams []Upstream `json:"upstreams"`
				Listen    string     `json:"listen"`
			}{cfg.Upstreams, cfg.Listen}, "", "  ")
			golden.Check(t, filepath.Join("testdata", tc.name, "parse.golden.json"), string(parsed)+"\n")

			changes, err := Rewrite(cfg, tc.leaving, tc.mode)
			if err != nil || len(changes) != 1 {
				t.Fatalf("Rewrite: %d changes, %v", len(changes), err)
			}
			c := changes[0]
			if c.Before != in || c.Path != file {
				t.Fatalf("change of %s: before differs from the file read", c.Path)
			}
			golden.Check(t, filepath.Join("testdata", tc.name, "out", "haproxy.cfg"), c.After)
			var diff string
			for _, g := range GroupDiffs(map[string][]host.FileChange{"node-1": changes}) {
				diff += g.Diff
			}
			golden.Check(t, filepath.Join("testdata", tc.name, "diff.golden"), diff)
			haproxyCheck(t, in)
			haproxyCheck(t, c.After)

			// Only the leaving servers' lines changed, and the result needs no further change.
			bl, al := strings.Split(in, "\n"), strings.Split(c.After, "\n")
			if tc.mode == MarkDown {
				for i := range bl {
					if bl[i] != al[i] && !(strings.Contains(bl[i], "server") && al[i] == insertDisabled(bl[i])) {
						t.Errorf("line %d: %q became %q", i+1, bl[i], al[i])
					}
				}
			}
			cfg2, err := ParseHAProxy("node-1", file, c.After, labAPI, tc.resolved)
			if err != nil {
				t.Fatal(err)
			}
			if again, err := Rewrite(cfg2, tc.leaving, tc.mode); err != nil || len(again) != 0 {
				t.Fatalf("second Rewrite changed %d files (err %v)", len(again), err)
			}
			// The set-aside of an apiserver is undone by the reverse edit, as with nginx.
			if tc.mode == MarkDown {
				for _, u := range cfg2.Upstreams {
					for _, s := range u.Servers {
						for _, k := range cfg2.keys(s) {
							for _, l := range tc.leaving {
								if k == l && !s.Down {
									t.Errorf("server %s %s still enabled after the rewrite", s.Name, s.Address)
								}
							}
						}
					}
				}
			}
		})
	}
}

// insertDisabled is a server line with " disabled" after its last word, before a comment.
func insertDisabled(l string) string {
	code, comment, hasComment := strings.Cut(l, "#")
	trimmed := strings.TrimRight(code, " \t")
	out := trimmed + " disabled" + code[len(trimmed):]
	if hasComment {
		out += "#" + comment
	}
	return out
}

func TestHAProxyRefusals(t *testing.T) {
	const file = "/etc/haproxy/haproxy.cfg"
	head := "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\nfrontend fe\n  bind 127.0.0.1:6443\n  default_backend be\n"
	tests := []struct {
		name, text, want string
	}{
		{"server-template", head + "backend be\n  server m1 10.88.0.11:6443\n  server-template k8s 3 apiserver.example.com:6443 check\n",
			file + ":11: backend be: server-template makes its servers when haproxy runs"},
		{"no port", head + "backend be\n  server m1 10.88.0.11:6443\n  server m2 10.88.0.12\n",
			"backend be fronts the apiservers, but mastershrink cannot tell which apiserver these servers are: " + file + ":11: server m2 10.88.0.12 has no port"},
		{"port offset", head + "backend be\n  server m1 10.88.0.11:6443\n  server m2 10.88.0.12:+1\n",
			"server m2 10.88.0.12:+1 has a port offset (+1)"},
		{"environment", head + "backend be\n  server m1 10.88.0.11:6443\n  server m2 \"${M2}:6443\"\n",
			"server m2 ${M2}:6443 names an environment variable"},
		{"unix socket", head + "backend be\n  server m1 10.88.0.11:6443\n  server local unix@/run/api.sock\n",
			"server local unix@/run/api.sock is not a TCP address"},
		{"conditional", head + ".if defined(HAPROXY_MWORKER)\nbackend be\n  server m1 10.88.0.11:6443\n.endif\n",
			file + ":9: conditional block (.if)"},
		{"unterminated quote", head + "backend be\n  server m1 \"10.88.0.11:6443\n", file + ":10: unterminated quote"},
		{"out of section", "server m1 10.88.0.11:6443\n", file + `:1: "server" before any section`},
		{"server without address", head + "backend be\n  server m1\n", file + ":10: server needs a name and an address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseHAProxy("n", file, tt.text, labAPI, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseHAProxy error = %v, want one containing %q", err, tt.want)
			}
		})
	}

	// A backend of other servers next to the apiservers' is left alone, even with odd addresses.
	cfg, err := ParseHAProxy("n", file, head+"backend be\n  server m1 10.88.0.11:6443\nbackend sock\n  server s unix@/run/x.sock\n  server-template t 2 x.example.com:80\n", labAPI, nil)
	if err != nil || len(cfg.Upstreams) != 1 {
		t.Fatalf("ParseHAProxy = %+v, %v", cfg.Upstreams, err)
	}

	// No enabled server would be left.
	cfg, err = ParseHAProxy("n", file, head+"backend be\n  server m1 10.88.0.11:6443\n  server m2 10.88.0.12:6443 disabled\n", labAPI, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Rewrite(cfg, []string{"10.88.0.11:6443"}, MarkDown)
	var nl *NoUpstreamLeftError
	if !errors.Is(err, ErrNoUpstreamLeft) || !errors.As(err, &nl) || !strings.Contains(err.Error(), "n: "+file+":9: backend be: no enabled server would be left") {
		t.Fatalf("Rewrite error = %v", err)
	}

	// A config fronting none of the apiservers says what it has.
	cfg, err = ParseHAProxy("n", file, head+"backend be\n  server r 10.88.0.50:5000\n", labAPI, nil)
	if err != nil {
		t.Fatal(err)
	}
	var none *NoAPIServerError
	if err := RequireAPIServer(cfg); !errors.As(err, &none) || !strings.Contains(err.Error(), "backend be at "+file+":9 list none of the apiservers") ||
		!strings.Contains(err.Error(), "point haproxy_config at") {
		t.Fatalf("RequireAPIServer = %v", err)
	}
}

func TestHAProxyServerNames(t *testing.T) {
	in := loadCase(t, "haproxy-listen", "/etc/haproxy")["/etc/haproxy/haproxy.cfg"]
	if got := HAProxyServerNames("/etc/haproxy/haproxy.cfg", in); strings.Join(got, ",") != "m2" {
		t.Fatalf("names %v, want [m2]", got)
	}
}

func TestHAProxyDialAddr(t *testing.T) {
	for in, want := range map[string]string{
		"*:8443": "127.0.0.1:8443", ":6443": "127.0.0.1:6443", "0.0.0.0:6443": "127.0.0.1:6443",
		"10.0.0.1:6443,127.0.0.1:6443": "10.0.0.1:6443", "ipv4@127.0.0.1:7443": "127.0.0.1:7443",
		":::6443": "[::1]:6443", "127.0.0.1:6443-6445": "127.0.0.1:6443", "unix@/run/x.sock": "", "/run/x": "",
	} {
		if got := hapDialAddr(in); got != want {
			t.Errorf("hapDialAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// Inputs off the beaten path: CRLF line ends, a '#' and blanks inside quotes, an escaped
// blank, two backends fronting the apiservers (one by use_backend only), servers in a
// frontend (not haproxy's: ignored), a backup server, and a backend no frontend uses.
func TestHAProxyWeirdInputs(t *testing.T) {
	const file = "/etc/haproxy/haproxy.cfg"
	tests := []struct {
		name, in, want, listen string
		leaving                []string
		mode                   Mode
		// badInput: haproxy -c refuses the input itself (2.6 wants a final LF), not the edit.
		badInput bool
	}{
		{name: "crlf",
			in:     "defaults\r\n  mode tcp\r\n  timeout connect 5s\r\n  timeout client 1m\r\n  timeout server 1m\r\nlisten api\r\n  bind :6443\r\n  server m1 10.88.0.11:6443 check\r\n  server m2 10.88.0.12:6443 check\r\n",
			want:   "defaults\r\n  mode tcp\r\n  timeout connect 5s\r\n  timeout client 1m\r\n  timeout server 1m\r\nlisten api\r\n  bind :6443\r\n  server m1 10.88.0.11:6443 check\r\n  server m2 10.88.0.12:6443 check disabled\r\n",
			listen: "127.0.0.1:6443", leaving: []string{"10.88.0.12:6443"}},
		{name: "quotes and escapes",
			in:     "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\nfrontend fe\n  bind \"127.0.0.1:6443\"\n  default_backend be\nbackend be\n  description \"apiservers # all\" of\\ them\n  server \"m1\" 10.88.0.11:6443 check\n  server 'm2' \"10.88.0.12:6443\" check # '#' in \"quotes\"\n",
			want:   "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\nfrontend fe\n  bind \"127.0.0.1:6443\"\n  default_backend be\nbackend be\n  description \"apiservers # all\" of\\ them\n  server \"m1\" 10.88.0.11:6443 check\n  server 'm2' \"10.88.0.12:6443\" check disabled # '#' in \"quotes\"\n",
			listen: "127.0.0.1:6443", leaving: []string{"10.88.0.12:6443"}},
		{name: "two backends, backup, a frontend's stray server, an unused backend",
			in: "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\n" +
				"frontend fe\n  bind 127.0.0.1:7443\n  use_backend blue if { src 127.0.0.2 }\n  default_backend green\n" +
				"backend blue\n  server m1 10.88.0.11:6443\n  server m2 10.88.0.12:6443\n" +
				"backend green\n  server m2 10.88.0.12:6443\n  server m3 10.88.0.13:6443 backup\n" +
				"backend spare\n  server m2 10.88.0.12:6443\n  server m1 10.88.0.11:6443\n",
			want: "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\n" +
				"frontend fe\n  bind 127.0.0.1:7443\n  use_backend blue if { src 127.0.0.2 }\n  default_backend green\n" +
				"backend blue\n  server m1 10.88.0.11:6443\n" +
				"backend green\n  server m3 10.88.0.13:6443 backup\n" +
				"backend spare\n  server m1 10.88.0.11:6443\n",
			listen: "127.0.0.1:7443", leaving: []string{"10.88.0.12:6443"}, mode: Remove},
		{name: "no newline at the end, removed",
			in:     "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\nlisten api\n  bind 127.0.0.1:6443\n  server m1 10.88.0.11:6443\n  server m2 10.88.0.12:6443",
			want:   "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\nlisten api\n  bind 127.0.0.1:6443\n  server m1 10.88.0.11:6443\n",
			listen: "127.0.0.1:6443", leaving: []string{"10.88.0.12:6443"}, mode: Remove, badInput: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseHAProxy("n", file, tt.in, labAPI, nil)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Listen != tt.listen {
				t.Errorf("listen %q, want %q", cfg.Listen, tt.listen)
			}
			ch, err := Rewrite(cfg, tt.leaving, tt.mode)
			if err != nil || len(ch) != 1 {
				t.Fatalf("Rewrite: %d changes, %v", len(ch), err)
			}
			if ch[0].After != tt.want {
				t.Fatalf("after:\n%q\nwant:\n%q", ch[0].After, tt.want)
			}
			if !tt.badInput {
				haproxyCheck(t, tt.in)
			}
			haproxyCheck(t, ch[0].After)
		})
	}
}
