package lb

import (
	"testing"
)

// TestRewriteTrickySyntax covers what the golden configs do not: two servers on one line, a
// directive over several lines, quoted strings and ${var} holding ';' '{' '#'.
func TestRewriteTrickySyntax(t *testing.T) {
	head := "events {}\nstream {\n    log_format p 'a;{b}# \"c\"' ${remote_addr};\n    upstream api {\n"
	tail := "    }\n    server { listen 127.0.0.1:8443; proxy_pass api; }\n}\n"
	api := []string{"10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.3:6443"}
	tests := []struct {
		name, servers, want string
		mode                Mode
	}{
		{"two on a line, mark down",
			"        server 10.0.0.1:6443; server 10.0.0.2:6443 max_fails=1;  server 10.0.0.3:6443;\n",
			"        server 10.0.0.1:6443; server 10.0.0.2:6443 max_fails=1 down;  server 10.0.0.3:6443;\n", MarkDown},
		{"two on a line, remove the middle",
			"        server 10.0.0.1:6443; server 10.0.0.2:6443 max_fails=1;  server 10.0.0.3:6443;\n",
			"        server 10.0.0.1:6443; server 10.0.0.3:6443;\n", Remove},
		{"over several lines, mark down",
			"        server 10.0.0.1:6443;\n        server\n          10.0.0.2:6443\n          max_fails=1   # why\n          ;\n",
			"        server 10.0.0.1:6443;\n        server\n          10.0.0.2:6443\n          max_fails=1 down   # why\n          ;\n", MarkDown},
		{"over several lines, remove",
			"        server 10.0.0.1:6443;\n        server\n          10.0.0.2:6443\n          max_fails=1\n          ;  # gone\n        server 10.0.0.3:6443;\n",
			"        server 10.0.0.1:6443;\n        server 10.0.0.3:6443;\n", Remove},
		{"IPv4 with a leading zero is the same address to nginx",
			"        server 10.0.0.1:6443;\n        server 10.0.0.02:6443;\n",
			"        server 10.0.0.1:6443;\n        server 10.0.0.02:6443 down;\n", MarkDown},
		{"another port is another server", "        server 10.0.0.1:6443;\n        server 10.0.0.2:443;\n", "", MarkDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"/etc/n/nginx.conf": head + tt.servers + tail}
			cfg, err := Parse("n", "/etc/n/nginx.conf", files, api)
			if err != nil {
				t.Fatal(err)
			}
			ch, err := Rewrite(cfg, []string{"10.0.0.2:6443"}, tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if len(ch) != 0 {
					t.Fatalf("changed:\n%s", ch[0].After)
				}
				return
			}
			if len(ch) != 1 || ch[0].After != head+tt.want+tail {
				t.Fatalf("got %+v\nwant servers:\n%s", ch, tt.want)
			}
			requireNginx(t)
			nginxTestFiles(t, map[string]string{"/etc/n/nginx.conf": ch[0].After}, "/etc/n", "/etc/n/nginx.conf")
		})
	}
}
