package observe

import (
	"context"
	"testing"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/hosttest"
	"github.com/mastershrink/mastershrink/inventory"
)

// A unit the inventory names that does not run is a mismatch only where its program runs
// under another unit; one command asks for every program, and none is asked when every
// unit runs.
func TestDiscoverUnits(t *testing.T) {
	ih := &inventory.Host{Name: "m1", Paths: inventory.Paths{EtcdUnit: "etcd", APIServerUnit: "kube-apiserver", SchedulerUnit: "kube-scheduler"}}
	h := hosttest.New("m1")
	var asked []string
	h.RunFunc = func(cmd string) (host.Result, error) {
		asked = append(asked, cmd)
		return host.Result{Stdout: []byte("kube-etcd.service   etcd\nkube-apiserver.service kube-apiserver\n")}, nil
	}
	got := discoverUnits(context.Background(), h, ih, map[string]string{"etcd_unit": "inactive", "apiserver_unit": "not-found", "scheduler_unit": "not-found"})
	if len(asked) != 1 || asked[0] != "ps -o unit=,comm= -C etcd,kube-apiserver,kube-scheduler" {
		t.Errorf("asked %q", asked)
	}
	// etcd runs elsewhere than the inventory says; kube-apiserver runs in the very unit named
	// (not-found was a stale answer); kube-scheduler does not run at all.
	if len(got) != 1 || got[0].Field != "etcd_unit" || got[0].Inventory != "etcd.service" || got[0].State != "inactive" || got[0].Found != "kube-etcd.service" {
		t.Errorf("mismatches %+v", got)
	}
	asked = nil
	if got := discoverUnits(context.Background(), h, ih, nil); got != nil || len(asked) != 0 {
		t.Errorf("with every unit running: %+v, asked %q", got, asked)
	}
	// No process of them (ps exits 1 with nothing): nothing to say.
	h.RunFunc = func(cmd string) (host.Result, error) {
		return host.Result{ExitCode: 1}, &host.CmdError{Host: "m1", Cmd: cmd, ExitCode: 1}
	}
	if got := discoverUnits(context.Background(), h, ih, map[string]string{"etcd_unit": "inactive"}); got != nil {
		t.Errorf("nothing running: %+v", got)
	}
}
