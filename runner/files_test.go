package runner

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The journal and the audit log name hosts, backups of files holding keys, and the snapshot
// that holds every Secret: they are created 0600 and never written through a symbolic link.
func TestJournalAndAuditFiles(t *testing.T) {
	type opener func(path string) error
	openers := map[string]opener{
		"journal": func(p string) error {
			j, err := OpenJournal(p, "sha256:aaa", "run1")
			if err == nil {
				err = j.Write(Entry{Event: EventRunStart})
				j.Close()
			}
			return err
		},
		"audit log": func(p string) error {
			a, err := OpenAudit(p, "sha256:aaa", "run1")
			if err == nil {
				err = a.Record(Change{Step: "s", Action: "write"})
				a.Close()
			}
			return err
		},
	}
	old := syscall.Umask(0)
	defer syscall.Umask(old) // a permissive umask must not loosen the files
	for what, open := range openers {
		t.Run(what, func(t *testing.T) {
			dir := t.TempDir()

			fresh := filepath.Join(dir, "fresh.jsonl")
			if err := open(fresh); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Lstat(fresh); err != nil || fi.Mode().Perm() != 0o600 || !fi.Mode().IsRegular() {
				t.Errorf("new file: %v, mode %v, want 0600", err, fi.Mode())
			}

			// Left 0644 by an older version or by hand: tightened on open.
			loose := filepath.Join(dir, "loose.jsonl")
			if err := os.WriteFile(loose, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := open(loose); err != nil {
				t.Fatal(err)
			}
			if fi, _ := os.Stat(loose); fi.Mode().Perm() != 0o600 {
				t.Errorf("existing 0644 file left %v", fi.Mode().Perm())
			}

			// A link planted at the path, to a file the operator would not want appended to.
			target := filepath.Join(dir, "authorized_keys")
			if err := os.WriteFile(target, []byte("ssh-ed25519 AAAA\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(dir, "link.jsonl")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			err := open(link)
			if !errors.Is(err, ErrNotPrivateFile) || !strings.Contains(err.Error(), "symbolic link") || !strings.Contains(err.Error(), link) {
				t.Errorf("symlink: %v", err)
			}
			if data, _ := os.ReadFile(target); string(data) != "ssh-ed25519 AAAA\n" {
				t.Errorf("the link's target was written: %q", data)
			}
			// A dangling link would otherwise create the file wherever it points.
			dangling := filepath.Join(dir, "dangling.jsonl")
			if err := os.Symlink(filepath.Join(dir, "elsewhere"), dangling); err != nil {
				t.Fatal(err)
			}
			if err := open(dangling); !errors.Is(err, ErrNotPrivateFile) {
				t.Errorf("dangling symlink: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(dir, "elsewhere")); !os.IsNotExist(err) {
				t.Errorf("the dangling link's target was created: %v", err)
			}

			// A FIFO would block the run forever, or hand records to whoever reads it.
			fifo := filepath.Join(dir, "fifo.jsonl")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := open(fifo); err == nil {
				t.Error("FIFO accepted")
			}
		})
	}

	// Reading the history refuses a link as well: a planted journal could mark steps done.
	dir := t.TempDir()
	real := filepath.Join(dir, "real.jsonl")
	if err := openJournalAndClose(real); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "p.journal.jsonl")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadJournal(link, "sha256:aaa"); !errors.Is(err, ErrNotPrivateFile) {
		t.Errorf("ReadJournal through a symlink: %v", err)
	}
	if h, err := ReadJournal(real, "sha256:aaa"); err != nil || h.Runs != 1 {
		t.Errorf("ReadJournal of the real file: %v, %d runs", err, h.Runs)
	}
}

// openJournalAndClose writes one run start, as a run does first.
func openJournalAndClose(path string) error {
	j, err := OpenJournal(path, "sha256:aaa", "run1")
	if err != nil {
		return err
	}
	defer j.Close()
	return j.Write(Entry{Event: EventRunStart})
}
