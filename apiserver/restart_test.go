package apiserver

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// The journal of a kube-apiserver that cannot start, as the lab's m1 wrote it, with the
// next start's flag dump after it (systemd restarts it 5 s later).
func TestExplainLines(t *testing.T) {
	var lines []string
	flags := func(pid int) {
		for i := 0; i < 30; i++ {
			lines = append(lines, fmt.Sprintf(`Nov 21 23:45:45 m1 kube-apiserver[%d]: I1121 23:45:45.290642     %d flags.go:64] FLAG: --tls-cert-file="/nonexistent.pem"`, pid, pid))
		}
	}
	flags(484)
	want := []string{
		`Nov 21 23:45:45 m1 kube-apiserver[484]: E1121 23:45:45.295342     484 run.go:72] "command failed" err="open /nonexistent.pem: no such file or directory"`,
		`Nov 21 23:45:45 m1 systemd[1]: kube-apiserver.service: Main process exited, code=exited, status=1/FAILURE`,
		`Nov 21 23:45:45 m1 systemd[1]: kube-apiserver.service: Failed with result 'exit-code'.`,
		`Nov 21 23:45:45 m1 systemd[1]: Failed to start kube-apiserver.service - Kubernetes API Server.`,
	}
	lines = append(lines, `Nov 21 23:45:45 m1 kube-apiserver[484]: I1121 23:45:45.293708     484 server.go:151] Version: v1.37.0`)
	lines = append(lines, want...)
	flags(510)
	if got := explainLines(lines, 20); !reflect.DeepEqual(got, want) {
		t.Errorf("explainLines:\n got %q\nwant %q", got, want)
	}
	if got := explainLines(lines, 2); !reflect.DeepEqual(got, want[2:]) {
		t.Errorf("explainLines capped at 2: %q", got)
	}
	plain := []string{"a", "b", "c"}
	if got := explainLines(plain, 2); !reflect.DeepEqual(got, []string{"b", "c"}) {
		t.Errorf("without a matching line, want the last ones: %q", got)
	}
}

func TestReadyDeadline(t *testing.T) {
	for _, c := range []struct {
		rt, want time.Duration
	}{
		{0, 2 * time.Minute}, // unset: the apiserver's 60 s default
		{10 * time.Second, DefaultReadyDeadline},
		{time.Minute, 2 * time.Minute},
		{3 * time.Minute, 4 * time.Minute},
	} {
		if got := ReadyDeadline(Component{Flags: Flags{RequestTimeout: c.rt}}); got != c.want {
			t.Errorf("ReadyDeadline(--request-timeout=%s) = %s, want %s", c.rt, got, c.want)
		}
	}
}
