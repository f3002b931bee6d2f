package machine

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
)

// Quote makes s one word for the POSIX shell of a host's Run.
func Quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Word is Quote for a command a person reads too (a report's "remove with: ...", a logged
// command): a word of letters, digits and -_./=:@%+, stands bare, as the shell takes it.
func Word(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:@%+,", r))
	}) < 0 {
		return s
	}
	return Quote(s)
}

// Resolve resolves a host name the way programs on h do (getent ahosts: /etc/hosts, DNS,
// whatever nsswitch says), so a name means what it means to the etcd or nginx that reads it
// there. The addresses are sorted; an address given as name comes back as itself.
func Resolve(ctx context.Context, h Host, name string) ([]string, error) {
	if net.ParseIP(name) != nil {
		return []string{name}, nil
	}
	res, err := h.Run(ctx, "getent ahosts "+Quote(name)+" | awk '{print $1}' | sort -u")
	if err != nil {
		return nil, err
	}
	out := strings.Fields(string(res.Stdout))
	sort.Strings(out)
	return out, nil
}

// AfterChange runs cmd on h, then reads h's clock and the latest modification time of paths
// (seconds since the epoch), in one command; out is what cmd printed. The clock is read after
// cmd, never before: a process age that cmd prints then gives a start (now - age) no earlier
// than the real one, so a slow host cannot make a process started after the files were
// written look older than them. The resolution is one second.
func AfterChange(ctx context.Context, h Host, cmd string, paths []string) (out string, now, mtime int64, err error) {
	q := make([]string, len(paths))
	for i, p := range paths {
		q[i] = Quote(p)
	}
	res, err := h.Run(ctx, "( "+cmd+"\n)\necho "+ClockMark+"\ndate +%s; stat -c %Y -- "+strings.Join(q, " ")+" | sort -n | tail -n 1")
	if err != nil {
		return "", 0, 0, err
	}
	out, clock, ok := strings.Cut(string(res.Stdout), ClockMark+"\n")
	f := strings.Fields(clock)
	if !ok || len(f) != 2 {
		return "", 0, 0, fmt.Errorf("%s: unexpected output %q", h.Name(), res.Stdout)
	}
	now, err1 := strconv.ParseInt(f[0], 10, 64)
	mtime, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return "", 0, 0, fmt.Errorf("%s: unexpected output %q", h.Name(), res.Stdout)
	}
	return out, now, mtime, nil
}

// ClockMark ends cmd's lines in AfterChange's output.
const ClockMark = "--mastershrink-clock--"
