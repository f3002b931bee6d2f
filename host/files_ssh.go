package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// exitNotExist and exitChanged are exit codes of the file scripts below, chosen to not
// collide with the tools' own (1 and 2).
const (
	exitNotExist = 44
	exitChanged  = 45
)

func isExit(err error, code int) bool {
	var ce *CmdError
	return errors.As(err, &ce) && ce.ExitCode == code
}

func (h *sshHost) ReadFile(ctx context.Context, path string) ([]byte, error) {
	q := shq(path)
	res, err := h.run(ctx, "cat "+path, fmt.Sprintf("[ -e %s ] || exit %d; exec cat -- %s", q, exitNotExist, q), nil)
	if isExit(err, exitNotExist) {
		return nil, fmt.Errorf("%s: read %s: %w", h.name, path, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return res.Stdout, nil
}

func (h *sshHost) Stat(ctx context.Context, path string) (FileInfo, error) {
	q := shq(path)
	res, err := h.run(ctx, "stat "+path, fmt.Sprintf("[ -e %s ] || exit %d; exec stat -L -c '%%s %%f %%u %%g' -- %s", q, exitNotExist, q), nil)
	if isExit(err, exitNotExist) {
		return FileInfo{}, fmt.Errorf("%s: stat %s: %w", h.name, path, fs.ErrNotExist)
	}
	if err != nil {
		return FileInfo{}, fmt.Errorf("stat %s: %w", path, err)
	}
	info, err := parseStat(path, string(res.Stdout))
	if err != nil {
		return FileInfo{}, fmt.Errorf("%s: stat %s: %w", h.name, path, err)
	}
	return info, nil
}

// readStat is ReadFile and Stat in one command: a write over a thousand nodes pays one round
// trip per node for both.
func (h *sshHost) readStat(ctx context.Context, path string) ([]byte, FileInfo, error) {
	q := shq(path)
	res, err := h.run(ctx, "stat+cat "+path, fmt.Sprintf("[ -e %s ] || exit %d; stat -L -c '%%s %%f %%u %%g' -- %s && exec cat -- %s", q, exitNotExist, q, q), nil)
	if isExit(err, exitNotExist) {
		return nil, FileInfo{}, fmt.Errorf("%s: read %s: %w", h.name, path, fs.ErrNotExist)
	}
	if err != nil {
		return nil, FileInfo{}, fmt.Errorf("read %s: %w", path, err)
	}
	line, data, ok := bytes.Cut(res.Stdout, []byte("\n"))
	if !ok {
		return nil, FileInfo{}, fmt.Errorf("%s: stat %s: unexpected output %q", h.name, path, res.Stdout)
	}
	info, err := parseStat(path, string(line))
	if err != nil {
		return nil, FileInfo{}, fmt.Errorf("%s: stat %s: %w", h.name, path, err)
	}
	return data, info, nil
}

// parseStat reads `stat -c '%s %f %u %g'`: size, raw mode in hex, owner and group ids.
func parseStat(path, out string) (FileInfo, error) {
	f := strings.Fields(out)
	if len(f) != 4 {
		return FileInfo{}, fmt.Errorf("unexpected stat output %q", out)
	}
	size, err1 := strconv.ParseInt(f[0], 10, 64)
	raw, err2 := strconv.ParseUint(f[1], 16, 32)
	uid, err3 := strconv.Atoi(f[2])
	gid, err4 := strconv.Atoi(f[3])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return FileInfo{}, fmt.Errorf("unexpected stat output %q: %w", out, err)
	}
	mode := fromUnixMode(uint32(raw))
	return FileInfo{Path: path, Size: size, Mode: mode, UID: uid, GID: gid, IsDir: mode.IsDir()}, nil
}

func fromUnixMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	switch m & 0o170000 {
	case 0o040000:
		mode |= fs.ModeDir
	case 0o120000:
		mode |= fs.ModeSymlink
	case 0o010000:
		mode |= fs.ModeNamedPipe
	case 0o140000:
		mode |= fs.ModeSocket
	case 0o060000:
		mode |= fs.ModeDevice
	case 0o020000:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	}
	return mode
}

func toUnixPerm(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

func (h *sshHost) WriteFile(ctx context.Context, path string, data []byte, opts WriteOptions) (WriteResult, error) {
	res, _, err := h.writeFile(ctx, path, data, opts, "")
	return res, err
}

// WriteFileThen is WriteFile with then run in the write's own command once the file is in
// place (machine.WriteThen).
func (h *sshHost) WriteFileThen(ctx context.Context, path string, data []byte, opts WriteOptions, then string) (WriteResult, ThenResult, error) {
	return h.writeFile(ctx, path, data, opts, then)
}

// writtenMark ends what the write part of a command with a then prints: its presence says
// the file is in place, and what follows is then's.
const writtenMark = "--- mastershrink: written"

func (h *sshHost) writeFile(ctx context.Context, path string, data []byte, opts WriteOptions, then string) (WriteResult, ThenResult, error) {
	var tr ThenResult
	runThen := func() {
		if then != "" {
			tr.Result, tr.Err = h.Run(ctx, then)
		}
	}
	res := WriteResult{NewSHA256: sha256hex(data)}
	// With the expected content known, the write's own command checks it and reads the
	// owner and mode; otherwise a first command reads them, and tells whether anything changes.
	expect := opts.Expect != nil && *opts.Expect != string(data)
	exists, mode, owner := expect, fs.FileMode(defaultNewFileMode), ""
	if expect {
		res.OldSHA256 = sha256hex([]byte(*opts.Expect))
	} else {
		old, info, err := h.readStat(ctx, path)
		exists = err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, tr, fmt.Errorf("write %s: %w", path, err)
		}
		if exists {
			if opts.Expect != nil && string(old) != *opts.Expect {
				return res, tr, fmt.Errorf("%s: write %s: %w", h.name, path, ErrFileChanged)
			}
			res.OldSHA256 = sha256hex(old)
			if bytes.Equal(old, data) && (opts.Mode == 0 || info.Mode.Perm() == opts.Mode.Perm()) {
				runThen()
				return res, tr, nil
			}
			mode, owner = info.Mode, fmt.Sprintf("%d:%d", info.UID, info.GID)
		} else if opts.Expect != nil {
			return res, tr, fmt.Errorf("%s: write %s: %w", h.name, path, ErrFileChanged)
		}
	}

	var s strings.Builder
	// The link's target is replaced, not the link; readlink only for a link, since this runs
	// on every node of a fleet-wide change.
	fmt.Fprintf(&s, "set -e\np=%s\n[ ! -L \"$p\" ] || p=$(readlink -f -- \"$p\")\n", shq(path))
	if expect {
		fmt.Fprintf(&s, "[ -f \"$p\" ] || exit %d\n", exitChanged)
	}
	// d and b by expansion, not dirname and basename: two processes fewer on every write of a
	// fleet-wide change.
	s.WriteString(`case $p in */*) ;; *) p=./$p ;; esac
d=${p%/*}; d=${d:-/}; b=${p##*/}
tmp=$(mktemp -- "$d/.$b.mastershrink-XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
sum=$(sha256sum < "$tmp")
`)
	fmt.Fprintf(&s, "[ \"${sum%%%% *}\" = %s ] || { echo 'content damaged in transit' >&2; exit 1; }\n", res.NewSHA256)
	if opts.Mode != 0 {
		mode = opts.Mode
	}
	if expect && opts.Mode == 0 {
		// The file's owner and mode, given to the temporary file where they differ from its own.
		s.WriteString(`set -- $(stat -c '%u:%g %a' -- "$p" "$tmp")
[ "$1" = "$3" ] || chown "$1" -- "$tmp"
[ "$2" = "$4" ] || chmod "$2" -- "$tmp"
`)
	} else {
		if expect {
			owner = `"$(stat -c %u:%g -- "$p")"`
		}
		if owner != "" {
			fmt.Fprintf(&s, "chown %s -- \"$tmp\"\n", owner)
		}
		// chmod after chown, which clears setuid bits.
		fmt.Fprintf(&s, "chmod %04o -- \"$tmp\"\n", toUnixPerm(mode))
	}
	if exists {
		fmt.Fprintf(&s, "cur=$(sha256sum < \"$p\"); [ \"${cur%%%% *}\" = %s ] || exit %d\n", res.OldSHA256, exitChanged)
		if opts.Backup {
			// The new content and the backup are on disk, in one sync, before the rename.
			fmt.Fprintf(&s, `bak="$p"%s; n=1
while [ -e "$bak" ]; do n=$((n+1)); bak="$p"%s-$n; done
cp -p -- "$p" "$bak"; sync -- "$tmp" "$bak"; printf '%%s' "$bak"
`, BackupSuffix(h.now()), BackupSuffix(h.now()))
		} else {
			s.WriteString("sync -- \"$tmp\"\n")
		}
	} else {
		fmt.Fprintf(&s, "sync -- \"$tmp\"\n[ ! -e \"$p\" ] || exit %d\n", exitChanged)
	}
	s.WriteString("mv -f -- \"$tmp\" \"$p\"\ntrap - EXIT\nsync -- \"$d\"\n")
	if then != "" {
		// then runs as a command of its own would: without set -e, with no stdin (the
		// write's stdin was the content).
		fmt.Fprintf(&s, "printf '\\n%%s\\n' '%s'\nset +e\n( %s\n) </dev/null\nexit $?\n", writtenMark, then)
	}

	out, err := h.run(ctx, "write "+path, s.String(), bytes.NewReader(data))
	if then != "" {
		if head, tail, ok := bytes.Cut(out.Stdout, []byte("\n"+writtenMark+"\n")); ok {
			// In place: what follows is then's, err included.
			res.Backup, res.Changed = string(head), true
			tr.Result = Result{Stdout: tail, Stderr: out.Stderr, ExitCode: out.ExitCode, Duration: out.Duration}
			if ce := (*CmdError)(nil); errors.As(err, &ce) {
				tr.Err = &CmdError{Host: ce.Host, Cmd: then, ExitCode: ce.ExitCode, Stderr: ce.Stderr}
			} else if err != nil {
				tr.Err = err
			}
			return res, tr, nil
		}
	}
	if isExit(err, exitChanged) {
		return res, tr, fmt.Errorf("%s: write %s: %w", h.name, path, ErrFileChanged)
	}
	if err != nil {
		return res, tr, fmt.Errorf("write %s: %w", path, err)
	}
	res.Backup = string(out.Stdout)
	res.Changed = true
	return res, tr, nil
}
