package runner

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mastershrink/mastershrink/plan"
)

// Undo puts back what the reversible steps of an applied plan changed. Its only sources are
// the run's own records: the journal says which steps ended and which backups they made, the
// audit log the checksum of every file before and after. A file is put back only while it
// still holds exactly what apply wrote and its backup exactly what apply replaced, so undo
// never overwrites a later change nor restores the wrong backup.

var (
	// ErrPastNoReturn means a step past the plan's point of no return has run: etcd members
	// are gone, and only the snapshot brings them back.
	ErrPastNoReturn = errors.New("past the point of no return")
	// ErrUndoUnsafe means undo cannot prove what it would put back: a file changed since
	// apply wrote it, a backup that is not what apply replaced, a step cut off mid-way.
	ErrUndoUnsafe = errors.New("cannot undo safely")
)

// UndoFile is one file to put back from its backup.
type UndoFile struct {
	Path   string `json:"path"`
	Backup string `json:"backup"`
	// BeforeSHA256 is what the backup must hold; AfterSHA256 what the file must hold now.
	BeforeSHA256 string `json:"before_sha256"`
	AfterSHA256  string `json:"after_sha256"`
}

// UndoAction is what undoing one step does.
type UndoAction struct {
	Step string `json:"step"`
	Kind string `json:"kind"`
	Host string `json:"host"`
	// Files are restored, then the kind's follow-up runs: nginx -t and a reload for a
	// proxy, daemon-reload and a restart gated on /readyz for the apiserver unit.
	Files []UndoFile `json:"files,omitempty"`
	// Units are enabled and started again (a retired master's components).
	Units []string `json:"units,omitempty"`
}

// Describe says in one line what the action will do.
func (a UndoAction) Describe() string {
	switch a.Kind {
	case plan.KindLBUpdate:
		return fmt.Sprintf("restore %s from its backup, test it (nginx -t or haproxy -c), reload", joinPaths(a.Files))
	case plan.KindAPIServerRewrite:
		return fmt.Sprintf("restore %s from its backup, daemon-reload, restart kube-apiserver, wait for /readyz", joinPaths(a.Files))
	case plan.KindRetire:
		return "enable and start " + strings.Join(a.Units, ", ")
	case plan.KindVIPUpdate:
		return fmt.Sprintf("restore %s from its backup, keepalived --config-test, reload keepalived unless it holds a VIP", joinPaths(a.Files))
	case plan.KindVIPRelease:
		return "enable and start " + strings.Join(a.Units, ", ") + " (the VIP moves back if it has the highest priority)"
	}
	return a.Kind
}

func joinPaths(files []UndoFile) string {
	var out []string
	for _, f := range files {
		out = append(out, f.Path)
	}
	return strings.Join(out, ", ")
}

// UndoPlan is the undo of one applied plan, actions in the order to run them (the plan's
// order reversed).
type UndoPlan struct {
	Actions []UndoAction `json:"actions"`
	// Notes name the steps that ran and need no undo, and why.
	Notes []string `json:"notes,omitempty"`
}

// Records are what the runs of one plan wrote: journal entries and audit changes.
type Records struct {
	Entries []Entry
	Changes []Change
}

// ReadRecords reads the journal and audit entries of the plan with checksum. Both files are
// opened as ReadJournal opens the journal: no symbolic link, only a regular file. A missing
// journal means the plan never ran.
func ReadRecords(journalPath, auditPath, checksum string) (Records, error) {
	var r Records
	lines, err := readPrivateLines(journalPath, "journal")
	if err != nil {
		return r, err
	}
	for _, l := range lines {
		var e Entry
		if json.Unmarshal(l, &e) == nil && e.Plan == checksum {
			r.Entries = append(r.Entries, e)
		}
	}
	lines, err = readPrivateLines(auditPath, "audit log")
	if err != nil {
		return r, err
	}
	for _, l := range lines {
		var c Change
		if json.Unmarshal(l, &c) == nil && c.Plan == checksum {
			r.Changes = append(r.Changes, c)
		}
	}
	return r, nil
}

func readPrivateLines(path, what string) ([][]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, privateFileError(path, what, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s %s: %w (it is %s)", what, path, ErrNotPrivateFile, st.Mode().Type())
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", what, path, err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		out = append(out, slices.Clone(sc.Bytes()))
	}
	return out, nil
}

// PlanUndo decides what undoing p takes, from its records, or refuses: ErrPastNoReturn once
// any step past the point of no return has started (a removal cut off mid-way may have
// happened), ErrUndoUnsafe when a reversible step started and did not end (its backups are
// not in the journal) or a backup has no audit record. planPath and invPath only shape the
// commands the refusals give.
func PlanUndo(p *plan.Plan, rec Records, planPath, invPath string) (UndoPlan, error) {
	var u UndoPlan
	started, ended := map[string]bool{}, map[string]bool{}
	var snap *Snapshot
	for _, e := range rec.Entries {
		switch e.Event {
		case EventStart:
			started[e.Step] = true
		case EventEnd:
			ended[e.Step] = true
		}
		if e.Snapshot != nil {
			snap = e.Snapshot
		}
	}
	if len(started) == 0 && len(ended) == 0 {
		return u, fmt.Errorf("%w: the journal records no step of this plan: apply never ran it, so there is nothing to undo", ErrUndoUnsafe)
	}
	var past []string
	for _, st := range p.Steps {
		if st.PastNoReturn && (started[st.ID] || ended[st.ID]) {
			past = append(past, st.ID)
		}
	}
	if len(past) > 0 {
		return u, pastNoReturnError(past, snap, planPath, invPath)
	}

	// The first backup of a file is the original: a resumed run rewrites nothing it finds
	// done, and a later backup would hold apply's own content.
	backups := map[string]map[string]string{}
	for _, e := range rec.Entries {
		if e.Event != EventEnd {
			continue
		}
		for hp, b := range e.Backups {
			if backups[e.Step] == nil {
				backups[e.Step] = map[string]string{}
			}
			if _, ok := backups[e.Step][hp]; !ok {
				backups[e.Step][hp] = b
			}
		}
	}
	audit := map[string]Change{}
	for _, c := range rec.Changes {
		if c.File == "" {
			continue
		}
		k := c.Step + "\x00" + c.Host + ":" + c.File
		if first, ok := audit[k]; ok {
			// Keep the original before, the latest after.
			c.BeforeSHA256 = first.BeforeSHA256
		}
		audit[k] = c
	}

	for i := len(p.Steps) - 1; i >= 0; i-- {
		st := p.Steps[i]
		if !started[st.ID] && !ended[st.ID] {
			continue
		}
		info, _ := plan.Kind(st.Kind)
		if info.ReadOnly {
			continue
		}
		if !ended[st.ID] {
			return u, fmt.Errorf("%w: step %s started but did not end, so the journal has none of its backups; finish it first (mastershrink apply %s -i %s --only %s), then undo",
				ErrUndoUnsafe, st.ID, planPath, invPath, st.ID)
		}
		a := UndoAction{Step: st.ID, Kind: st.Kind, Host: st.Host}
		switch st.Kind {
		case plan.KindLBUpdate, plan.KindAPIServerRewrite, plan.KindVIPUpdate:
			for _, f := range st.Files {
				hp := f.Host + ":" + f.Path
				if f.Host == "" {
					hp = st.Host + ":" + f.Path
				}
				b, ok := backups[st.ID][hp]
				if !ok {
					continue
				}
				c, ok := audit[st.ID+"\x00"+hp]
				if !ok || c.BeforeSHA256 == "" || c.AfterSHA256 == "" {
					return u, fmt.Errorf("%w: %s: the audit log has no checksums for %s, so undo cannot prove its backup %s is what apply replaced; compare them by hand",
						ErrUndoUnsafe, st.ID, hp, b)
				}
				a.Files = append(a.Files, UndoFile{Path: strings.TrimPrefix(hp, st.Host+":"), Backup: b, BeforeSHA256: c.BeforeSHA256, AfterSHA256: c.AfterSHA256})
			}
			if len(a.Files) == 0 {
				u.Notes = append(u.Notes, st.ID+": wrote nothing (found done already), nothing to put back")
				continue
			}
		case plan.KindRetire:
			rp, err := plan.DecodeParams[plan.RetireParams](st)
			if err != nil {
				return UndoPlan{}, err
			}
			if rp.Offline {
				u.Notes = append(u.Notes, st.ID+": the host was offline, nothing was stopped")
				continue
			}
			for _, unit := range rp.Units {
				if unit != "" {
					a.Units = append(a.Units, unit)
				}
			}
		case plan.KindVIPRelease:
			vp, err := plan.DecodeParams[plan.VIPReleaseParams](st)
			if err != nil {
				return UndoPlan{}, err
			}
			a.Units = []string{vp.Unit}
		case plan.KindMoveLeader:
			u.Notes = append(u.Notes, st.ID+": which member leads etcd needs no undo")
			continue
		default:
			return u, fmt.Errorf("%w: step %s (%s) ran and undo does not know how to reverse it", ErrUndoUnsafe, st.ID, st.Kind)
		}
		u.Actions = append(u.Actions, a)
	}
	return u, nil
}

func pastNoReturnError(steps []string, snap *Snapshot, planPath, invPath string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s ran, and etcd membership changes cannot be undone from backups.", ErrPastNoReturn, strings.Join(steps, ", "))
	if snap != nil {
		fmt.Fprintf(&b, " To go back, restore the etcd snapshot %s (revision %d, taken %s, sha256 %s) on every member with etcdutl snapshot restore, as a new cluster, and put the backed-up files back by hand.",
			snap.Path, snap.Revision, snap.TakenAt.UTC().Format(time.RFC3339), snap.SHA256)
	} else {
		b.WriteString(" The journal records no snapshot; restore the cluster from your own etcd backup to go back.")
	}
	fmt.Fprintf(&b, " To go forward instead, finish the shrink: mastershrink apply %s -i %s", planPath, invPath)
	return refusal{msg: b.String(), err: ErrPastNoReturn}
}

// refusal is an error with its own message that still matches its sentinel.
type refusal struct {
	msg string
	err error
}

func (r refusal) Error() string { return r.msg }
func (r refusal) Unwrap() error { return r.err }

// RecordPaths are where apply keeps a plan's journal, audit log and snapshot folder, as
// Options' defaults place them: next to the plan, named after it.
func RecordPaths(planPath string) (journal, audit, snapshotDir string) {
	if abs, err := filepath.Abs(planPath); err == nil {
		planPath = abs
	}
	base := strings.TrimSuffix(planPath, ".json")
	return base + ".journal.jsonl", base + ".audit.jsonl", base + ".snapshot"
}
