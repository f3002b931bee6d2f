package runner

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/plan"
)

// undoPlan is a 3-to-1 shrink cut to the steps undo cares about.
func undoPlan() *plan.Plan {
	return &plan.Plan{Checksum: "sha256:p", PointOfNoReturn: "etcd/remove-member/m2", Steps: []plan.Step{
		{ID: "preflight", Kind: plan.KindPreflight},
		{ID: "etcd/snapshot", Kind: plan.KindSnapshot},
		{ID: "apiserver/update/m1", Kind: plan.KindAPIServerRewrite, Host: "m1", Files: []host.FileChange{{Path: "/etc/systemd/system/kube-apiserver.service"}}},
		{ID: "lb/update/m1", Kind: plan.KindLBUpdate, Host: "m1", Files: []host.FileChange{{Path: "/etc/nginx/nginx.conf"}}},
		{ID: "lb/update/w1", Kind: plan.KindLBUpdate, Host: "w1", Files: []host.FileChange{{Path: "/etc/nginx/nginx.conf"}}},
		{ID: "components/retire/m2", Kind: plan.KindRetire, Host: "m2", Params: map[string]string{"units": "kube-apiserver.service,kube-scheduler.service"}},
		{ID: "etcd/move-leader", Kind: plan.KindMoveLeader},
		{ID: "etcd/remove-member/m2", Kind: plan.KindRemoveMember, Host: "m2", PastNoReturn: true},
		{ID: "etcd/stop/m2", Kind: plan.KindStopEtcd, Host: "m2", PastNoReturn: true},
	}}
}

// ran records steps as ended, with a backup and an audit record for each file.
func ran(rec *Records, p *plan.Plan, ids ...string) {
	for _, id := range ids {
		st, _ := p.Step(id)
		rec.Entries = append(rec.Entries, Entry{Plan: p.Checksum, Step: id, Event: EventStart})
		e := Entry{Plan: p.Checksum, Step: id, Event: EventEnd}
		if id == "etcd/snapshot" {
			e.Snapshot = &Snapshot{Path: "/root/plan.snapshot/etcd.db", Revision: 42, SHA256: "abc", TakenAt: time.Date(2026, 11, 30, 21, 0, 0, 0, time.UTC)}
		}
		for _, f := range st.Files {
			if e.Backups == nil {
				e.Backups = map[string]string{}
			}
			e.Backups[st.Host+":"+f.Path] = f.Path + ".bak-1"
			rec.Changes = append(rec.Changes, Change{Plan: p.Checksum, Step: id, Host: st.Host, File: f.Path, Action: "rewrite",
				BeforeSHA256: "before-" + st.Host, AfterSHA256: "after-" + st.Host, Backup: f.Path + ".bak-1"})
		}
		rec.Entries = append(rec.Entries, e)
	}
}

func TestPlanUndoReverseOrder(t *testing.T) {
	p := undoPlan()
	var rec Records
	ran(&rec, p, "preflight", "etcd/snapshot", "apiserver/update/m1", "lb/update/m1", "lb/update/w1", "components/retire/m2", "etcd/move-leader")
	u, err := PlanUndo(p, rec, "plan.json", "inv.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range u.Actions {
		got = append(got, a.Step)
	}
	// Retired components come back before the proxies send to them again; the apiserver
	// unit, rewritten first, is restored last.
	want := "components/retire/m2 lb/update/w1 lb/update/m1 apiserver/update/m1"
	if strings.Join(got, " ") != want {
		t.Errorf("undo order %q, want %q", got, want)
	}
	if f := u.Actions[1].Files; len(f) != 1 || f[0].Backup != "/etc/nginx/nginx.conf.bak-1" || f[0].AfterSHA256 != "after-w1" || f[0].BeforeSHA256 != "before-w1" {
		t.Errorf("w1's file %+v", f)
	}
	if units := u.Actions[0].Units; strings.Join(units, ",") != "kube-apiserver.service,kube-scheduler.service" {
		t.Errorf("retire units %q", units)
	}
}

func TestPlanUndoKeepsTheFirstBackup(t *testing.T) {
	p := undoPlan()
	var rec Records
	ran(&rec, p, "lb/update/w1")
	// A second run of the same step (resumed after a crash right after it) found it done
	// and made a backup of apply's own content: the original is the first one.
	rec.Entries = append(rec.Entries, Entry{Plan: p.Checksum, Step: "lb/update/w1", Event: EventEnd, Backups: map[string]string{"w1:/etc/nginx/nginx.conf": "/etc/nginx/nginx.conf.bak-2"}})
	rec.Changes = append(rec.Changes, Change{Plan: p.Checksum, Step: "lb/update/w1", Host: "w1", File: "/etc/nginx/nginx.conf", BeforeSHA256: "after-w1", AfterSHA256: "after-w1"})
	u, err := PlanUndo(p, rec, "plan.json", "inv.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := u.Actions[0].Files[0]
	if f.Backup != "/etc/nginx/nginx.conf.bak-1" || f.BeforeSHA256 != "before-w1" {
		t.Errorf("undo would restore %s (before %s), want the first backup and the original checksum", f.Backup, f.BeforeSHA256)
	}
}

func TestPlanUndoRefusedPastNoReturn(t *testing.T) {
	p := undoPlan()
	var rec Records
	ran(&rec, p, "preflight", "etcd/snapshot", "apiserver/update/m1", "lb/update/m1")
	// Started but not ended is enough: a removal cut off mid-way may have happened.
	rec.Entries = append(rec.Entries, Entry{Plan: p.Checksum, Step: "etcd/remove-member/m2", Event: EventStart})
	_, err := PlanUndo(p, rec, "plan.json", "inv.yaml")
	if !errors.Is(err, ErrPastNoReturn) {
		t.Fatalf("err = %v, want ErrPastNoReturn", err)
	}
	for _, want := range []string{"etcd/remove-member/m2", "/root/plan.snapshot/etcd.db", "revision 42", "etcdutl snapshot restore", "mastershrink apply plan.json -i inv.yaml"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q: %v", want, err)
		}
	}
}

func TestPlanUndoRefusals(t *testing.T) {
	p := undoPlan()
	if _, err := PlanUndo(p, Records{}, "plan.json", "inv.yaml"); !errors.Is(err, ErrUndoUnsafe) || !strings.Contains(err.Error(), "never ran") {
		t.Errorf("no journal: %v", err)
	}
	var rec Records
	ran(&rec, p, "preflight", "lb/update/m1")
	rec.Entries = append(rec.Entries, Entry{Plan: p.Checksum, Step: "lb/update/w1", Event: EventStart})
	if _, err := PlanUndo(p, rec, "plan.json", "inv.yaml"); !errors.Is(err, ErrUndoUnsafe) || !strings.Contains(err.Error(), "--only lb/update/w1") {
		t.Errorf("step cut off: %v", err)
	}
	rec = Records{}
	ran(&rec, p, "lb/update/m1")
	rec.Changes = nil
	if _, err := PlanUndo(p, rec, "plan.json", "inv.yaml"); !errors.Is(err, ErrUndoUnsafe) || !strings.Contains(err.Error(), "audit log") {
		t.Errorf("no audit record: %v", err)
	}
	// Records of another plan are not this plan's.
	rec = Records{}
	ran(&rec, p, "lb/update/m1")
	dir := t.TempDir()
	writeLines(t, filepath.Join(dir, "j"), rec.Entries)
	writeLines(t, filepath.Join(dir, "a"), rec.Changes)
	got, err := ReadRecords(filepath.Join(dir, "j"), filepath.Join(dir, "a"), "sha256:other")
	if err != nil || len(got.Entries) != 0 || len(got.Changes) != 0 {
		t.Errorf("another plan's records: %+v, %v", got, err)
	}
	got, err = ReadRecords(filepath.Join(dir, "j"), filepath.Join(dir, "a"), p.Checksum)
	if err != nil || len(got.Entries) != 2 || len(got.Changes) != 1 {
		t.Errorf("this plan's records: %d entries, %d changes, %v", len(got.Entries), len(got.Changes), err)
	}
	os.Symlink(filepath.Join(dir, "j"), filepath.Join(dir, "link"))
	if _, err := ReadRecords(filepath.Join(dir, "link"), filepath.Join(dir, "a"), p.Checksum); !errors.Is(err, ErrNotPrivateFile) {
		t.Errorf("journal through a symbolic link: %v, want ErrNotPrivateFile", err)
	}
}

func writeLines[T any](t *testing.T, path string, items []T) {
	t.Helper()
	j, err := OpenJournal(path, "x", "r")
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, it := range items {
		data, _ := json.Marshal(it)
		j.f.Write(append(data, '\n'))
	}
}

// TestUndoCheckAndRestore runs the file part of an undo against this machine's files.
func TestUndoCheckAndRestore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	bak := conf + ".bak-1"
	os.WriteFile(conf, []byte("server 10.0.0.2:6443 down;\n"), 0o644)
	os.WriteFile(bak, []byte("server 10.0.0.2:6443;\n"), 0o644)
	u := UndoPlan{Actions: []UndoAction{{Step: "lb/update/w1", Kind: plan.KindLBUpdate, Host: "w1",
		Files: []UndoFile{{Path: conf, Backup: bak, BeforeSHA256: sha([]byte("server 10.0.0.2:6443;\n")), AfterSHA256: sha([]byte("server 10.0.0.2:6443 down;\n"))}}}}}
	h := host.NewLocal("w1")
	env := UndoEnv{Host: func(context.Context, string) (host.Host, error) { return h, nil }}
	if err := u.Check(ctx, env); err != nil {
		t.Fatalf("check of untouched files: %v", err)
	}
	if err := restoreFiles(ctx, h, u.Actions[0].Files, io.Discard); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(conf); string(got) != "server 10.0.0.2:6443;\n" {
		t.Errorf("restored file holds %q", got)
	}
	// What apply wrote is kept in a backup of its own.
	baks, _ := filepath.Glob(conf + ".bak-*")
	found := false
	for _, b := range baks {
		if data, _ := os.ReadFile(b); string(data) == "server 10.0.0.2:6443 down;\n" {
			found = true
		}
	}
	if !found {
		t.Errorf("no backup of apply's content among %q", baks)
	}

	// Now the file is no longer what apply wrote: Check refuses and names it and the backup.
	err := u.Check(ctx, env)
	if !errors.Is(err, ErrUndoUnsafe) || !strings.Contains(err.Error(), conf+" changed since lb/update/w1 wrote it") {
		t.Errorf("check after a change: %v", err)
	}
	// A backup that is not what apply replaced is refused too.
	os.WriteFile(conf, []byte("server 10.0.0.2:6443 down;\n"), 0o644)
	os.WriteFile(bak, []byte("someone else's\n"), 0o644)
	if err := u.Check(ctx, env); !errors.Is(err, ErrUndoUnsafe) || !strings.Contains(err.Error(), "is not the content lb/update/w1 replaced") {
		t.Errorf("check of a wrong backup: %v", err)
	}
}

func TestUndoRunStopsWhenTheLockIsLost(t *testing.T) {
	u := UndoPlan{Actions: []UndoAction{{Step: "lb/update/w1", Kind: plan.KindLBUpdate, Host: "w1"}, {Step: "lb/update/m1", Kind: plan.KindLBUpdate, Host: "m1"}}}
	dialled := false
	env := UndoEnv{
		Fence: func(context.Context) error { return errors.New("lock /mastershrink/lock taken over") },
		Host:  func(context.Context, string) (host.Host, error) { dialled = true; return nil, errors.New("no") },
	}
	err := u.Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "taken over") || !strings.Contains(err.Error(), "not undone: lb/update/w1, lb/update/m1") {
		t.Errorf("err = %v, want the lock's error and every step left", err)
	}
	if dialled {
		t.Error("a host was reached after the lock was lost")
	}
}

// The VIP steps run first, so an undo of any shrink reaches them: the staying keepalived's
// peers come back from their backup, then keepalived starts again on the leaving hosts
// (holder last in the plan, so first back).
func TestPlanUndoVIP(t *testing.T) {
	p := undoPlan()
	vipSteps := []plan.Step{
		{ID: "vip/release/m2", Kind: plan.KindVIPRelease, Host: "m2", Params: plan.EncodeParams(plan.VIPReleaseParams{Unit: "keepalived.service", VIPs: []string{"10.0.0.100"}})},
		{ID: "vip/update/m1", Kind: plan.KindVIPUpdate, Host: "m1", Files: []host.FileChange{{Path: "/etc/keepalived/keepalived.conf"}}},
	}
	p.Steps = append(p.Steps[:2], append(vipSteps, p.Steps[2:]...)...)
	var rec Records
	ran(&rec, p, "preflight", "etcd/snapshot", "vip/release/m2", "vip/update/m1", "apiserver/update/m1")
	u, err := PlanUndo(p, rec, "plan.json", "inv.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range u.Actions {
		got = append(got, a.Step+": "+a.Describe())
	}
	want := []string{
		"apiserver/update/m1: restore /etc/systemd/system/kube-apiserver.service from its backup, daemon-reload, restart kube-apiserver, wait for /readyz",
		"vip/update/m1: restore /etc/keepalived/keepalived.conf from its backup, keepalived --config-test, reload keepalived unless it holds a VIP",
		"vip/release/m2: enable and start keepalived.service (the VIP moves back if it has the highest priority)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("undo:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
