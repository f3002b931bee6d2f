package machine

import (
	"context"
	"net"
	"sort"
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
