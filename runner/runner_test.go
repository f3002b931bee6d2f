package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/testenv/etcdtest"
)

func seedPlan(t *testing.T) *plan.Plan {
	t.Helper()
	data, err := os.ReadFile("../plan/testdata/seed003-3to1/plan.json")
	if err != nil {
		t.Fatal(err)
	}
	// The golden file is the plan without its checksum (plan.Encode adds it).
	var p plan.Plan
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func TestSelect(t *testing.T) {
	p := seedPlan(t)
	cases := []struct {
		only, skip []string
		want       []string // steps that run
		err        string
	}{
		{want: nil}, // nil: every step
		{only: []string{"etcd/remove-member"}, want: []string{"preflight", "etcd/remove-member/m2", "etcd/remove-member/m3"}},
		{only: []string{"etcd/snapshot", "lb"}, want: []string{"preflight", "etcd/snapshot", "lb/update/m1", "lb/update/w1", "lb/update/w2", "lb/stop/m2", "lb/stop/m3"}},
		{only: []string{"certs/"}, skip: []string{"certs/resign/etcd"}, want: []string{"preflight", "certs/resign/kubernetes"}},
		{only: []string{"etcd/rem"}, err: `--only "etcd/rem" names no step`},
		{skip: []string{"nodes"}, err: `--skip "nodes" names no step`},
	}
	for _, tc := range cases {
		sel, err := Select(p, tc.only, tc.skip)
		if tc.err != "" {
			var se *SelectionError
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &se) {
				t.Errorf("Select(%v, %v) = %v, want a SelectionError with %q", tc.only, tc.skip, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Select(%v, %v): %v", tc.only, tc.skip, err)
			continue
		}
		var got []string
		for _, s := range p.Steps {
			if sel.Runs(s) {
				got = append(got, s.ID)
			}
		}
		if tc.want == nil {
			if len(got) != len(p.Steps) {
				t.Errorf("no selection runs %d of %d steps", len(got), len(p.Steps))
			}
			continue
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("Select(%v, %v) runs %v, want %v", tc.only, tc.skip, got, tc.want)
		}
	}
}

func TestJournalHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.journal.jsonl")
	j, err := OpenJournal(path, "sha256:aaa", "run1")
	if err != nil {
		t.Fatal(err)
	}
	snap := &Snapshot{Path: "/x.db", SHA256: "ff", Revision: 7, Keys: 3}
	for _, e := range []Entry{
		{Event: EventRunStart},
		{Step: "preflight", Event: EventStart}, {Step: "preflight", Event: EventEnd},
		{Step: "etcd/snapshot", Event: EventStart}, {Step: "etcd/snapshot", Event: EventEnd, Snapshot: snap},
		{Step: "apiserver/update/m1", Event: EventStart},
	} {
		if err := j.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	// Another plan's run, and a line cut short by a crash.
	other, _ := OpenJournal(path, "sha256:bbb", "run2")
	other.Write(Entry{Step: "lb/update/w1", Event: EventStart})
	other.Close()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-01-01T00:00:00Z","plan":"sha256:aaa","step":"lb/upd`)
	f.Close()

	h, err := ReadJournal(path, "sha256:aaa")
	if err != nil {
		t.Fatal(err)
	}
	if h.Runs != 1 || !h.Ended["etcd/snapshot"] || h.Ended["apiserver/update/m1"] || !h.Started["apiserver/update/m1"] || h.Started["lb/update/w1"] {
		t.Errorf("history %+v", h)
	}
	if h.Snapshot == nil || *h.Snapshot != *snap {
		t.Errorf("snapshot %+v, want %+v", h.Snapshot, snap)
	}
	readOnly := func(id string) bool { return id == "preflight" || id == "etcd/snapshot" }
	if !h.Resumed(readOnly) {
		t.Error("a started apiserver step is not seen as a resume")
	}

	// The next run appends on a fresh line after the cut one.
	j2, err := OpenJournal(path, "sha256:aaa", "run3")
	if err != nil {
		t.Fatal(err)
	}
	j2.Write(Entry{Step: "apiserver/update/m1", Event: EventEnd})
	j2.Close()
	h, _ = ReadJournal(path, "sha256:aaa")
	if !h.Ended["apiserver/update/m1"] {
		t.Error("entry after a cut line lost")
	}

	if h, _ := ReadJournal(filepath.Join(t.TempDir(), "none"), "x"); h.Runs != 0 || h.Resumed(readOnly) {
		t.Error("missing journal is not an empty history")
	}
}

func TestStaleness(t *testing.T) {
	old := seedPlan(t)
	old.Facts.Etcd.Members = []etcd.Member{
		{ID: 0x26c65c850c80d421, Name: "172.72.0.95", Healthy: true},
		{ID: 0x26c65c850c80d422, Name: "172.72.0.96", Healthy: true},
		{ID: 0x26c65c850c80d423, Name: "172.72.0.97", Healthy: true},
	}
	now := *old
	now.Facts.Etcd.Members = old.Facts.Etcd.Members[:2] // 172.72.0.97 removed by hand
	now.Steps = slices.DeleteFunc(slices.Clone(old.Steps), func(s plan.Step) bool { return strings.HasSuffix(s.ID, "/m3") })
	got := strings.Join(staleness(old, &now), "\n")
	for _, want := range []string{"etcd member 172.72.0.97 (26c65c850c80d423) is gone since the plan was made",
		"step etcd/remove-member/m3 is no longer needed or possible"} {
		if !strings.Contains(got, want) {
			t.Errorf("staleness lacks %q:\n%s", want, got)
		}
	}
	if got := staleness(old, old); len(got) != 1 || !strings.Contains(got[0], "fingerprint differs") {
		t.Errorf("nothing named for an unexplained difference: %v", got)
	}
	err := &StaleError{Changes: staleness(old, &now)}
	if !errors.Is(err, plan.ErrStalePlan) || !strings.Contains(err.Error(), "make a fresh plan") {
		t.Errorf("StaleError %v", err)
	}
}

func TestProgressLines(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, false, []string{"preflight", "etcd/remove-member/m2"})
	p.step(2, "etcd/remove-member/m2", statusDone, 1500*time.Millisecond, "removed")
	p.step(1, "preflight", statusAlready, 0, "")
	want := "[2/2] etcd/remove-member/m2  done              1.5s  removed\n[1/2] preflight              already done\n"
	if b.String() != want {
		t.Errorf("got:\n%q\nwant:\n%q", b.String(), want)
	}

	heartbeatEvery = 20 * time.Millisecond
	defer func() { heartbeatEvery = 10 * time.Second }()
	b.Reset()
	stop := p.heartbeat("removing etcd member m2")
	// The heartbeat writes from its own goroutine under the progress lock: read under it too.
	written := func() string { p.mu.Lock(); defer p.mu.Unlock(); return b.String() }
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(written(), "still removing etcd member m2 [00m00s elapsed]") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if !strings.Contains(b.String(), "still removing etcd member m2 [00m00s elapsed]") {
		t.Errorf("no heartbeat: %q", b.String())
	}
}

func TestLock(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	l, err := AcquireLock(ctx, cli, "sha256:one", 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ReadLock(ctx, cli)
	if err != nil || h == nil || h.Plan != "sha256:one" || h.PID != os.Getpid() {
		t.Fatalf("lock holder %+v, %v", h, err)
	}
	// Held past its TTL: the keepalive renews it.
	deadline := time.Now().Add(7 * time.Second)
	for time.Now().Before(deadline) {
		if h, _ := ReadLock(ctx, cli); h == nil {
			t.Fatal("lock expired while held")
		}
		time.Sleep(500 * time.Millisecond)
	}

	// A second apply of this process (a live holder) is refused at once, naming the holder.
	_, err = AcquireLock(ctx, cli, "sha256:two", 5*time.Second, nil)
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLocked) || le.Holder.Plan != "sha256:one" || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("second lock: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if h, _ := ReadLock(ctx, cli); h != nil {
		t.Fatalf("lock still held after release: %+v", h)
	}

	// A lock left by a killed run of this machine is taken over at once; one of another
	// machine whose lease is no longer renewed is waited out.
	for _, tc := range []struct{ holder, msg string }{
		{`{"host":"x","machine_id":"` + machineID() + `","boot_id":"` + bootID() + `","pid_namespace":"` + pidNamespace() + `","pid":999999999,"plan":"sha256:dead","since":"2026-01-01T00:00:00Z"}`, "took over the lock"},
		{`{"host":"elsewhere","machine_id":"other","pid":1,"plan":"sha256:dead","since":"2026-01-01T00:00:00Z"}`, "stopped renewing its lease"},
		// Same machine-id, another PID namespace (a container): the PID proves nothing, so
		// the lock is not deleted but waited out.
		{`{"host":"x","machine_id":"` + machineID() + `","boot_id":"` + bootID() + `","pid_namespace":"pid:[1]","pid":999999999,"plan":"sha256:dead","since":"2026-01-01T00:00:00Z"}`, "stopped renewing its lease"},
	} {
		lease, err := cli.Grant(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, LockKey, tc.holder, clientv3WithLease(lease.ID)); err != nil {
			t.Fatal(err)
		}
		var msg bytes.Buffer
		l, err = AcquireLock(ctx, cli, "sha256:three", 5*time.Second, &msg)
		if err != nil {
			t.Fatalf("lock after a crashed holder: %v", err)
		}
		if !strings.Contains(msg.String(), tc.msg) {
			t.Errorf("message %q, want %q", msg.String(), tc.msg)
		}
		l.Release(ctx)
	}

	// Fencing: a lock whose key was deleted, or taken by another run after that, is no longer
	// this run's, even though its lease is still alive.
	l, err = AcquireLock(ctx, cli, "sha256:four", 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(ctx); err != nil {
		t.Fatalf("fresh lock does not verify: %v", err)
	}
	if _, err := cli.Delete(ctx, LockKey); err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(ctx); !errors.Is(err, ErrLockLost) || !strings.Contains(err.Error(), "deleted") {
		t.Errorf("deleted lock: Verify = %v, want ErrLockLost naming the deletion", err)
	}
	other, err := AcquireLock(ctx, cli, "sha256:five", 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(ctx); !errors.Is(err, ErrLockLost) || !strings.Contains(err.Error(), "now held by") || !strings.Contains(err.Error(), "five") {
		t.Errorf("lock taken by another run: Verify = %v, want ErrLockLost naming the holder", err)
	}
	other.Release(ctx)
	l.Release(ctx)
}

func TestPreflightEtcdHealthNote(t *testing.T) {
	members := []etcd.Member{
		{ID: 0x11, Name: "172.72.0.95", Healthy: true},
		{ID: 0x12, Name: "172.72.0.96", Healthy: true},
		{ID: 0x13, Name: "172.72.0.97", Error: "context deadline exceeded"},
		{ID: 0xab, Error: "never started"},
	}
	hostOf := func(m etcd.Member) (string, bool) {
		switch m.ID {
		case 0x13:
			return "m3", true
		case 0xab:
			return "", false
		}
		return "m1", false
	}
	want := "etcd members healthy: 2 of 4 (unhealthy: 172.72.0.97 (on m3, planned offline), ab (not planned offline))"
	if got := etcdHealthNote(members, hostOf); got != want {
		t.Errorf("note\n got %s\nwant %s", got, want)
	}
	if got, want := etcdHealthNote(members[:2], hostOf), "etcd members healthy: 2 of 2"; got != want {
		t.Errorf("note %q, want %q", got, want)
	}
}
