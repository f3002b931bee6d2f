package runner

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/hosttest"
	"github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
)

// The executors' fake world: fake hosts as the plan's facts describe them, a shell that
// answers the commands the executors run, the time those commands tell, and a TLS endpoint
// that answers the probes.

// newFakes is a fakeCluster of fake hosts as fhs describe them (the inventory names the same
// hosts), with etcd and the API when given, and a plan whose facts are fhs.
func newFakes(cli *etcd.Client, kube kubernetes.Interface, fhs ...plan.Host) (*fakeCluster, *plan.Plan) {
	fc := &fakeCluster{inv: &inventory.Inventory{Cluster: "t"}, hosts: map[string]*hosttest.Host{}, etcd: cli, kube: kube}
	p := &plan.Plan{Cluster: "t"}
	for _, fh := range fhs {
		fc.hosts[fh.Name] = hosttest.New(fh.Name)
		fc.inv.Hosts = append(fc.inv.Hosts, inventory.Host{Name: fh.Name, Address: fh.Address, Roles: fh.Roles, Paths: fh.Paths})
		fh.Reachable = true
		p.Facts.Hosts = append(p.Facts.Hosts, fh)
	}
	return fc, p
}

// fakeHost is hosts[name], or the error of a cluster that has no such host.
func fakeHost(hosts map[string]*hosttest.Host, name string) (host.Host, error) {
	if h, ok := hosts[name]; ok {
		return h, nil
	}
	return nil, errors.New("no fake host " + name)
}

// mkStep is a step of kind on hostName with typed params (nil for a kind without).
func mkStep(kind, hostName string, params plan.Params, files ...host.FileChange) plan.Step {
	id := kind
	if hostName != "" {
		id += "/" + hostName
	}
	st := plan.Step{ID: id, Kind: kind, Host: hostName, Files: files}
	if params != nil {
		st.Params = plan.EncodeParams(params)
	}
	return st
}

// rule answers a command it knows (ok true).
type rule func(cmd string) (res host.Result, err error, ok bool)

// on answers the commands starting with prefix.
func on(prefix string, f func(cmd string) (host.Result, error)) rule {
	return func(cmd string) (host.Result, error, bool) {
		if !strings.HasPrefix(cmd, prefix) {
			return host.Result{}, nil, false
		}
		res, err := f(cmd)
		return res, err, true
	}
}

// stdout is a command's successful answer.
func stdout(out string) func(string) (host.Result, error) {
	return func(string) (host.Result, error) { return host.Result{Stdout: []byte(out)}, nil }
}

// exitWith is a command's failure with code and stderr, as host.Run reports it.
func exitWith(hostName string, code int, stderr string) func(string) (host.Result, error) {
	return func(cmd string) (host.Result, error) {
		return host.Result{ExitCode: code, Stderr: []byte(stderr)}, &host.CmdError{Host: hostName, Cmd: cmd, ExitCode: code, Stderr: stderr}
	}
}

// shell is a RunFunc trying rules in order; a command none knows exits 0 without output.
func shell(rules ...rule) func(string) (host.Result, error) {
	return func(cmd string) (host.Result, error) {
		for _, r := range rules {
			if res, err, ok := r(cmd); ok {
				return res, err
			}
		}
		return host.Result{}, nil
	}
}

// fallback answers every command as run does: last in a shell that overrides a few commands
// of a host's earlier RunFunc.
func fallback(run func(string) (host.Result, error)) rule {
	return func(cmd string) (host.Result, error, bool) {
		res, err := run(cmd)
		return res, err, true
	}
}

// failing is a hosttest Fail hook that fails verb on unit (any unit when "") with msg.
func failing(verb, unit, msg string) func(string, string) error {
	return func(v, u string) error {
		if v == verb && (unit == "" || u == unit) {
			return errors.New(msg)
		}
		return nil
	}
}

// refusedBySystemd applies st while h's systemd fails verb on unit ("" any): the step fails
// with an error naming want, and is not done.
func refusedBySystemd(t *testing.T, r *run, st plan.Step, h *hosttest.Host, verb, unit, want string) {
	t.Helper()
	h.Fail = failing(verb, unit, "refused by the fake systemd")
	defer func() { h.Fail = nil }()
	if _, err := apply(t, r, st); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s with %s refused: %v, want an error naming %s", st.ID, verb, err, want)
	}
	if doneOf(t, r, st) {
		t.Errorf("%s done after its failure", st.ID)
	}
}

// journaled gives r a journal and an audit log (journal.jsonl, audit.jsonl) in a temporary
// folder, which it returns, as a run next to its plan has.
func journaled(t *testing.T, r *run) string {
	t.Helper()
	dir := t.TempDir()
	var err error
	if r.journal, err = OpenJournal(dir+"/journal.jsonl", "sha256:x", "run1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.journal.Close() })
	if r.audit, err = OpenAudit(dir+"/audit.jsonl", "sha256:x", "run1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.audit.Close() })
	return dir
}

// clockNow is the fake hosts' time; entry i of a host's log happened at clockAt+i, files the
// test put there at clockFiles, units the test started at clockUnits (before the files).
const (
	clockNow   = 100000
	clockAt    = 1000
	clockFiles = 700
	clockUnits = 600
)

// clock answers, from the host's log, the commands that tell whether a process runs what
// its files hold: machine.AfterChange of `ps -o etimes= -p PID` (the main process of one of
// units, started at its last start or restart) or of nginx's worker list (lb's childrenCmd:
// one worker, started at the last reload of nginxUnit), and that worker list alone.
func clock(h *hosttest.Host, nginxUnit string, units ...string) rule {
	last := func(entries ...string) int {
		i := -1
		for j, l := range h.Log() {
			if slices.Contains(entries, l) {
				i = j
			}
		}
		return i
	}
	at := func(i, otherwise int) int {
		if i < 0 {
			return otherwise
		}
		return clockAt + i
	}
	children := func() string {
		reload := last("reload "+nginxUnit, "restart "+nginxUnit)
		return fmt.Sprintf("%d 1 %d nginx: worker process\n", 2000+reload+1, clockNow-at(reload, clockUnits))
	}
	// ages answers the command machine.AfterChange runs first.
	ages := func(cmd string) (string, bool) {
		if strings.HasPrefix(cmd, "f=/proc/") {
			return children(), true
		}
		pid, ok := strings.CutPrefix(cmd, "ps -o etimes= -p ")
		if !ok {
			return "", false
		}
		for _, u := range units {
			if strconv.Itoa(h.Unit(u).MainPID) == pid {
				return fmt.Sprintf("%d\n", clockNow-at(last("start "+u, "restart "+u), clockUnits)), true
			}
		}
		return "", true
	}
	return func(cmd string) (host.Result, error, bool) {
		if first, rest, ok := strings.Cut(cmd, "\n)\necho "+machine.ClockMark+"\n"); ok {
			out, ok := ages(strings.TrimPrefix(first, "( "))
			files, ok2 := strings.CutPrefix(rest, "date +%s; stat -c %Y -- ")
			files, _, ok3 := strings.Cut(files, " | sort -n | tail -n 1")
			if !ok || !ok2 || !ok3 {
				return host.Result{}, nil, false
			}
			mtime := 0
			for _, f := range strings.Fields(files) {
				mtime = max(mtime, at(last("write "+strings.Trim(f, "'")), clockFiles))
			}
			out += fmt.Sprintf("%s\n%d\n%d\n", machine.ClockMark, clockNow, mtime)
			return host.Result{Stdout: []byte(out)}, nil, true
		}
		if strings.HasPrefix(cmd, "f=/proc/") && strings.Contains(cmd, "/children\n") {
			return host.Result{Stdout: []byte(children())}, nil, true
		}
		return host.Result{}, nil, false
	}
}

// readyz is a TLS endpoint on loopback answering every path with its status (200 until
// set), as an apiserver's /readyz or a proxy in front of one does.
type readyz struct {
	srv    *httptest.Server
	status atomic.Int32
	// CAPEM verifies its certificate (for 127.0.0.1).
	CAPEM string
}

func newReadyz(t *testing.T) *readyz {
	z := &readyz{}
	z.status.Store(http.StatusOK)
	z.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(z.status.Load()))
		fmt.Fprintln(w, http.StatusText(int(z.status.Load())))
	}))
	t.Cleanup(z.srv.Close)
	z.CAPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: z.srv.Certificate().Raw}))
	return z
}

// Addr is "127.0.0.1:PORT".
func (z *readyz) Addr() string { return z.srv.Listener.Addr().String() }

// Port is the port it listens on.
func (z *readyz) Port() int { return z.srv.Listener.Addr().(*net.TCPAddr).Port }

func (z *readyz) set(status int) { z.status.Store(int32(status)) }

// ctxT is a context for one executor call.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
