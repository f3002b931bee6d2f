package lb

import (
	"slices"
	"strings"
	"testing"
)

// An upstream naming a leaving master by host name, next to address entries: the name is
// the apiserver at the addresses it resolves to on the node, so it is marked down (or
// removed) like an address would be. Without the resolution it would be left alone, which is
// why Observe resolves every name ServerNames lists.
func TestUpstreamServersByName(t *testing.T) {
	const main = "/etc/nginx/nginx.conf"
	conf := `events {}
stream {
    upstream kube_apiserver {
        server 10.0.0.1:6443 max_fails=3;
        server M2.lab.example:6443 max_fails=3;
        server 10.0.0.3:6443 max_fails=3;
    }
    server {
        listen 127.0.0.1:8443;
        proxy_pass kube_apiserver;
    }
}
`
	files := map[string]string{main: conf}
	api := []string{"10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.3:6443"}
	if got := ServerNames(main, files); !slices.Equal(got, []string{"m2.lab.example"}) {
		t.Fatalf("ServerNames = %v, want the one host name", got)
	}
	leaving := []string{"10.0.0.2:6443"}

	unresolved, err := Parse("w1", main, files, api)
	if err != nil {
		t.Fatal(err)
	}
	if cs, err := Rewrite(unresolved, leaving, MarkDown); err != nil || len(cs) != 0 {
		t.Fatalf("unresolved: %d changes, %v; want none (the name means nothing yet)", len(cs), err)
	}

	cfg, err := ParseResolved("w1", main, files, api, map[string][]string{"m2.lab.example": {"10.0.0.2"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []Mode{MarkDown, Remove} {
		cs, err := Rewrite(cfg, leaving, mode)
		if err != nil || len(cs) != 1 {
			t.Fatalf("%v: %d changes, %v", mode, len(cs), err)
		}
		after := cs[0].After
		switch mode {
		case MarkDown:
			if !strings.Contains(after, "server M2.lab.example:6443 max_fails=3 down;") {
				t.Errorf("mark down: the named server is not down:\n%s", after)
			}
		case Remove:
			if strings.Contains(after, "M2.lab.example") {
				t.Errorf("remove: the named server is still there:\n%s", after)
			}
		}
		if !strings.Contains(after, "server 10.0.0.1:6443 max_fails=3;") || !strings.Contains(after, "server 10.0.0.3:6443 max_fails=3;") {
			t.Errorf("%v: a staying server changed:\n%s", mode, after)
		}
	}

	// Only the name left live: marking the others down must still count it as live.
	cs, err := Rewrite(cfg, []string{"10.0.0.1:6443", "10.0.0.3:6443"}, MarkDown)
	if err != nil || len(cs) != 1 {
		t.Fatalf("the name as the one survivor: %d changes, %v", len(cs), err)
	}
	// And taking out every address, the name included, is refused.
	if _, err := Rewrite(cfg, api, MarkDown); err == nil {
		t.Error("an edit leaving no live server (the name resolved to a leaving address) was accepted")
	}
}
