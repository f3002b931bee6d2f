package lb

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/mastershrink/mastershrink/host/machine"
)

// Mode says what happens to a leaving apiserver's server line. In haproxy, MarkDown is the
// server's disabled keyword.
type Mode int

const (
	// MarkDown appends the down parameter, as seed 003 does: the line stays to show history
	// and a later undo is a one-word edit.
	MarkDown Mode = iota
	// Remove deletes the server line.
	Remove
)

func (m Mode) String() string {
	if m == Remove {
		return "remove"
	}
	return "mark-down"
}

// ErrNoUpstreamLeft is returned when an edit would leave an upstream with no live server.
var ErrNoUpstreamLeft = errors.New("no live server would be left in the upstream")

// NoUpstreamLeftError names the node, file and upstream that would be emptied.
type NoUpstreamLeftError struct {
	Node, File, Upstream string
	Line                 int
	// Kind is the proxy's (NodeConfig.Kind).
	Kind string
}

func (e *NoUpstreamLeftError) Error() string {
	if e.Kind == KindHAProxy {
		return fmt.Sprintf("%s: %s:%d: backend %s: no enabled server would be left in it", e.Node, e.File, e.Line, e.Upstream)
	}
	return fmt.Sprintf("%s: %s:%d: upstream %s: %v", e.Node, e.File, e.Line, e.Upstream, ErrNoUpstreamLeft)
}

func (e *NoUpstreamLeftError) Unwrap() error { return ErrNoUpstreamLeft }

// edit replaces text[start:end] with repl.
type edit struct {
	start, end int
	repl       string
}

// applyEdits makes the edits, which must not overlap, from the last to the first so that each
// one's offsets still hold when it is made.
func applyEdits(text string, edits []edit) string {
	sort.Slice(edits, func(i, j int) bool { return edits[i].start > edits[j].start })
	for _, e := range edits {
		text = text[:e.start] + e.repl + text[e.end:]
	}
	return text
}

// Rewrite returns the files of cfg that change when the leaving apiservers (host:port) are
// marked down or removed, sorted by path; a node already correct gives none. Only the leaving
// servers' lines change: the edit is made in the original text, so comments, blank lines and
// parameter order stay as written.
func Rewrite(cfg NodeConfig, leaving []string, mode Mode) ([]machine.FileChange, error) {
	leave := make(map[string]bool, len(leaving))
	for _, a := range leaving {
		k, err := addrKey(a)
		if err != nil {
			return nil, fmt.Errorf("leaving address %q: %w", a, err)
		}
		leave[k] = true
	}

	// Which server lines to edit, per file; and the live-server check per upstream.
	targets := map[string][]Server{}
	for _, u := range cfg.Upstreams {
		live, edited := 0, 0
		for _, s := range u.Servers {
			leaves := false
			for _, k := range cfg.keys(s) {
				leaves = leaves || leave[k]
			}
			if leaves {
				if mode == Remove || !s.Down {
					targets[s.File] = append(targets[s.File], s)
					edited++
				}
				continue
			}
			if !s.Down {
				live++
			}
		}
		// An upstream already without a live server is not this edit's doing; refuse only
		// an edit that would empty one.
		if live == 0 && edited > 0 {
			return nil, &NoUpstreamLeftError{Node: cfg.Host, File: u.File, Upstream: u.Name, Line: u.Line, Kind: cfg.Kind}
		}
	}

	files := make([]string, 0, len(targets))
	for f := range targets {
		files = append(files, f)
	}
	sort.Strings(files)
	var out []machine.FileChange
	for _, f := range files {
		before, ok := cfg.Files[f]
		if !ok {
			return nil, fmt.Errorf("%s: %s: not among the files read", cfg.Host, f)
		}
		rewrite := rewriteFile
		if cfg.Kind == KindHAProxy {
			rewrite = rewriteHAProxyFile
		}
		after, err := rewrite(f, before, targets[f], mode)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Host, err)
		}
		if after != before {
			out = append(out, machine.FileChange{Host: cfg.Host, Path: f, Before: before, After: after})
		}
	}
	return out, nil
}

func rewriteFile(file, text string, servers []Server, mode Mode) (string, error) {
	stmts, err := parseStmts(file, text)
	if err != nil {
		return "", err
	}
	// Index the server directives inside upstream blocks by line and address.
	type key struct {
		line int
		addr string
	}
	found := map[key][]*stmt{}
	var walk func([]*stmt, bool)
	walk = func(ss []*stmt, inUpstream bool) {
		for _, s := range ss {
			if inUpstream && s.name.val == "server" && !s.hasBlock() && len(s.args) > 0 {
				k := key{s.name.line, s.args[0].val}
				found[k] = append(found[k], s)
			}
			walk(s.block, s.name.val == "upstream")
		}
	}
	walk(stmts, false)

	var edits []edit
	seen := map[*stmt]bool{}
	for _, srv := range servers {
		ss := found[key{srv.Line, srv.Address}]
		if len(ss) == 0 {
			return "", fmt.Errorf("%s:%d: server %s not found (file changed since it was read?)", file, srv.Line, srv.Address)
		}
		for _, s := range ss {
			if seen[s] {
				continue
			}
			seen[s] = true
			if mode == Remove {
				edits = append(edits, removal(text, s))
				continue
			}
			if slices.Contains(s.argVals()[1:], "down") {
				continue
			}
			last := s.args[len(s.args)-1]
			edits = append(edits, edit{start: last.end, end: last.end, repl: " down"})
		}
	}
	return applyEdits(text, edits), nil
}

// removal deletes a directive. When it has its lines to itself (a trailing comment counts as
// its own), the whole lines go; otherwise only the directive and the blanks after it.
func removal(text string, s *stmt) edit {
	start, end := s.name.start, s.end.end
	lineStart := strings.LastIndexByte(text[:start], '\n') + 1
	rest := text[end:]
	nl := strings.IndexByte(rest, '\n')
	lineEnd := len(text)
	if nl >= 0 {
		lineEnd = end + nl + 1
	}
	tail := strings.TrimLeft(text[end:lineEnd], " \t\r\n")
	if strings.TrimLeft(text[lineStart:start], " \t") == "" && (tail == "" || tail[0] == '#') {
		return edit{start: lineStart, end: lineEnd}
	}
	for end < len(text) && (text[end] == ' ' || text[end] == '\t') {
		end++
	}
	return edit{start: start, end: end}
}
