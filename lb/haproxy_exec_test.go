package lb

import (
	"strings"
	"testing"
)

// ps as seen on a Debian node after two reloads: 31260 still finishes a connection, 31415 was
// replaced by 31648, which is current; a program section's child is not a worker.
func TestHAProxyWorkers(t *testing.T) {
	out := `  31257       1   900 /usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg -p /run/haproxy.pid -S /run/haproxy-master.sock
  31260   31257   900 /usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg -p /run/haproxy.pid -S /run/haproxy-master.sock
  31415   31257    60 /usr/sbin/haproxy -sf 31260 -x sockpair@3 -Ws -f /etc/haproxy/haproxy.cfg -p /run/haproxy.pid -S /run/haproxy-master.sock
  31648   31257     2 /usr/sbin/haproxy -sf 31415 31260 -x sockpair@4 -Ws -f /etc/haproxy/haproxy.cfg -p /run/haproxy.pid -S /run/haproxy-master.sock
  31700   31257   900 /usr/bin/dataplaneapi -f /etc/haproxy/dataplaneapi.yaml
`
	ps := parseHAPChildren(out, 31257)
	cur, old := hapCurrent(ps)
	if len(cur) != 1 || cur[0].pid != 31648 || cur[0].age != 2 {
		t.Fatalf("current %+v, want 31648 alone", cur)
	}
	if len(old) != 2 || old[0].pid != 31260 || old[1].pid != 31415 {
		t.Fatalf("old %+v, want 31260 and 31415", old)
	}
	// Right after USR2, before the new worker: the old one still looks current, and is the
	// one the reload wait must not take for the new one.
	cur, old = hapCurrent(parseHAPChildren(strings.Join(strings.Split(out, "\n")[:2], "\n"), 31257))
	if len(cur) != 1 || cur[0].pid != 31260 || len(old) != 0 {
		t.Fatalf("before the fork: current %+v, old %+v", cur, old)
	}
}

func TestHAProxyMessage(t *testing.T) {
	stderr := "[NOTICE]   (9347) : haproxy version is 2.6.12-1+deb12u3\n[ALERT]    (9347) : config : [/etc/haproxy/haproxy.cfg:4] : 'server be/m1' : unknown keyword 'bogus'.\n[ALERT]    (9347) : config : Fatal errors found in configuration.\n"
	want := "config : [/etc/haproxy/haproxy.cfg:4] : 'server be/m1' : unknown keyword 'bogus'.; config : Fatal errors found in configuration."
	if got := hapMessage(stderr); got != want {
		t.Fatalf("hapMessage = %q", got)
	}
}
