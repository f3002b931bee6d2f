package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// ReadAhead reads files and runs read-only commands on h in one command, and returns h
// answering those reads and commands from what it printed: one SSH session instead of one
// each, which on a fleet of a thousand nodes is what observing them costs (sshd, a login
// shell and the wrapper of every session, on every node).
//
// What the one command could not answer exactly as h would goes to h: a file that exists but
// cannot be read (h's own error then), a command that exits non-zero, every other read and
// command. A file that does not exist is fs.ErrNotExist, as from h. A command's stderr is not
// kept, so only commands whose stderr does not matter belong here. When the one command
// fails, the returned host is h itself. The answers are what the host held at the time of
// the call: it is for one observation, not for a host that changes meanwhile.
func ReadAhead(ctx context.Context, h Host, files, cmds []string) Host {
	if len(files)+len(cmds) == 0 {
		return h
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return h
	}
	// Each answer ends with a line of its own: the boundary, random so no file holds it, and
	// the answer's status. The newline before it is the script's, not the file's.
	mark := "mastershrink-" + hex.EncodeToString(b[:])
	var s strings.Builder
	for _, f := range files {
		q := shq(f)
		fmt.Fprintf(&s, "if [ ! -e %[1]s ]; then printf '\\n%[2]s missing\\n'; elif cat -- %[1]s 2>/dev/null; then printf '\\n%[2]s ok\\n'; else printf '\\n%[2]s error\\n'; fi\n", q, mark)
	}
	for _, c := range cmds {
		fmt.Fprintf(&s, "( %s\n) </dev/null 2>/dev/null; printf '\\n%s %%d\\n' $?\n", c, mark)
	}
	res, err := h.Run(ctx, s.String())
	if err != nil {
		return h
	}
	ra := &readAhead{Host: h, files: map[string][]byte{}, missing: map[string]bool{}, runs: map[string][]byte{}}
	out := res.Stdout
	sep := []byte("\n" + mark + " ")
	next := func() (body []byte, status string, ok bool) {
		i := bytes.Index(out, sep)
		if i < 0 {
			return nil, "", false
		}
		body, rest := out[:i], out[i+len(sep):]
		line, rest, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			return nil, "", false
		}
		out = rest
		return body, string(line), true
	}
	for _, f := range files {
		body, status, ok := next()
		if !ok {
			return h
		}
		switch status {
		case "ok":
			ra.files[f] = body
		case "missing":
			ra.missing[f] = true
		}
	}
	for _, c := range cmds {
		body, status, ok := next()
		if !ok {
			return h
		}
		if code, err := strconv.Atoi(status); err == nil && code == 0 {
			ra.runs[c] = body
		}
	}
	return ra
}

type readAhead struct {
	Host
	files   map[string][]byte
	missing map[string]bool
	runs    map[string][]byte
}

func (r *readAhead) ReadFile(ctx context.Context, path string) ([]byte, error) {
	if b, ok := r.files[path]; ok {
		return bytes.Clone(b), nil
	}
	if r.missing[path] {
		return nil, fmt.Errorf("%s: read %s: %w", r.Name(), path, fs.ErrNotExist)
	}
	return r.Host.ReadFile(ctx, path)
}

func (r *readAhead) Run(ctx context.Context, cmd string) (Result, error) {
	if out, ok := r.runs[cmd]; ok {
		return Result{Stdout: bytes.Clone(out)}, nil
	}
	return r.Host.Run(ctx, cmd)
}
