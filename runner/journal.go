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
	"sync"
	"syscall"
	"time"
)

// Journal events.
const (
	EventRunStart = "run-start"
	EventRunEnd   = "run-end"
	EventStart    = "start"
	EventEnd      = "end"
	EventSkip     = "skip"
	EventFail     = "fail"
)

// Snapshot is the verified etcd snapshot a run took, as the journal keeps it.
type Snapshot struct {
	Path     string `json:"path"`
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	Revision int64  `json:"revision"`
	Keys     int64  `json:"keys"`
	// TakenAt bounds how long the snapshot stands for the cluster (Options.SnapshotMaxAge).
	TakenAt time.Time `json:"taken_at"`
}

// Entry is one line of the journal.
type Entry struct {
	Time  time.Time `json:"time"`
	Plan  string    `json:"plan"`
	Run   string    `json:"run"`
	Step  string    `json:"step,omitempty"`
	Event string    `json:"event"`
	// Seconds is the step's (or the run's) duration, on end, skip and fail.
	Seconds float64 `json:"seconds,omitempty"`
	Result  string  `json:"result,omitempty"`
	Error   string  `json:"error,omitempty"`
	// Backups maps "host:path" to the backup made of it.
	Backups  map[string]string `json:"backups,omitempty"`
	Snapshot *Snapshot         `json:"snapshot,omitempty"`
}

// Journal appends entries to a JSON-lines file, each written and fsynced before the work it
// records goes on, so a crash leaves at most a half line, which ReadJournal ignores.
type Journal struct {
	records
	plan, run string
}

// ErrNotPrivateFile is a journal or audit path that is not a plain file of ours: a symbolic
// link (which could send the records, and the secrets they name, to another file), or a
// device, pipe or folder.
var ErrNotPrivateFile = errors.New("not a regular file")

// openPrivateAppend opens path for appending, creating it 0600. It does not follow a symbolic
// link at path, refuses anything but a regular file, and tightens an existing file to 0600:
// journal and audit name hosts, backups and the snapshot that holds every Secret.
func openPrivateAppend(path, what string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, privateFileError(path, what, err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s %s: %w (it is %s); remove it or choose another path", what, path, ErrNotPrivateFile, st.Mode().Type())
	}
	if err == nil && st.Mode().Perm() != 0o600 {
		err = f.Chmod(0o600)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", what, err)
	}
	return f, nil
}

// privateFileError names a symbolic link for what it is: O_NOFOLLOW reports it as ELOOP.
func privateFileError(path, what string, err error) error {
	if errors.Is(err, syscall.ELOOP) {
		return fmt.Errorf("open %s: %s is a symbolic link: %w; it could send the %s to another file. Remove the link or choose another path", what, path, ErrNotPrivateFile, what)
	}
	return fmt.Errorf("open %s: %w", what, err)
}

// records is a file of JSON lines that the journal and the audit log append to: each line is
// written and fsynced before the work it records goes on.
type records struct {
	mu   sync.Mutex
	f    *os.File
	path string
	what string // "journal" or "audit log", for errors
}

// append writes the record line builds, stamped with the time under the lock, so that the
// lines of concurrent steps stand in time order.
func (r *records) append(line func(now time.Time) any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, err := json.Marshal(line(time.Now().UTC().Truncate(time.Millisecond)))
	if err != nil {
		return fmt.Errorf("%s %s: %w", r.what, r.path, err)
	}
	if _, err := r.f.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("%s %s: %w", r.what, r.path, err)
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("%s %s: %w", r.what, r.path, err)
	}
	return nil
}

// Path is the file's path.
func (r *records) Path() string { return r.path }

// Close closes the file.
func (r *records) Close() error { return r.f.Close() }

// OpenJournal opens (or creates) the journal at path for one run of the plan with checksum.
// The file is 0600 and a symbolic link at path is refused (ErrNotPrivateFile).
func OpenJournal(path, planChecksum, run string) (*Journal, error) {
	f, err := openPrivateAppend(path, "journal")
	if err != nil {
		return nil, err
	}
	// A crash mid-line leaves no newline: start on a fresh line so the next entry parses.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0); err == nil {
			if _, err := r.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
				f.Write([]byte("\n"))
			}
			r.Close()
		}
	}
	return &Journal{records: records{f: f, path: path, what: "journal"}, plan: planChecksum, run: run}, nil
}

// Write appends e, stamped with the time, plan and run.
func (j *Journal) Write(e Entry) error {
	return j.append(func(now time.Time) any {
		e.Time, e.Plan, e.Run = now, j.plan, j.run
		return e
	})
}

// History is what earlier runs of one plan left in its journal.
type History struct {
	// Started and Ended are the steps with a start or an end entry, by ID.
	Started map[string]bool
	Ended   map[string]bool
	// Snapshot is the last snapshot a run of this plan took, nil when none.
	Snapshot *Snapshot
	// Runs counts the runs of this plan.
	Runs int
}

// Resumed says whether an earlier run got past the read-only steps.
func (h History) Resumed(readOnly func(id string) bool) bool {
	for id := range h.Started {
		if !readOnly(id) {
			return true
		}
	}
	return false
}

// ReadJournal reads the entries of the plan with checksum from the journal at path. A missing
// file is an empty history; lines that do not parse (a crash mid-write) are ignored. A
// symbolic link at path is refused, as OpenJournal refuses it: a planted history could make a
// run believe steps are done.
func ReadJournal(path, planChecksum string) (History, error) {
	h := History{Started: map[string]bool{}, Ended: map[string]bool{}}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return h, privateFileError(path, "journal", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		return h, fmt.Errorf("read journal %s: %w (it is %s); remove it or choose another path", path, ErrNotPrivateFile, st.Mode().Type())
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return h, fmt.Errorf("read journal: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var e Entry
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Plan != planChecksum {
			continue
		}
		switch e.Event {
		case EventRunStart:
			h.Runs++
		case EventStart:
			h.Started[e.Step] = true
		case EventEnd:
			h.Ended[e.Step] = true
		}
		if e.Snapshot != nil && (e.Event == EventEnd || e.Event == EventSkip) {
			h.Snapshot = e.Snapshot
		}
	}
	return h, nil
}
