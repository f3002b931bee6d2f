package diff

import (
	"fmt"
	"strings"
)

// context is the number of unchanged lines shown around each change, as diff -u does.
const context = 3

// Unified returns the unified diff (3 lines of context) turning a into b, with aName and bName
// in the header, or "" when they are equal. A text without a final newline is marked the way
// GNU diff and patch expect.
func Unified(aName, bName, a, b string) string {
	if a == b {
		return ""
	}
	al, bl := splitLines(a), splitLines(b)
	ops := editScript(al, bl)

	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s\n+++ %s\n", aName, bName)
	for _, h := range hunks(ops) {
		writeHunk(&sb, h, al, bl)
	}
	return sb.String()
}

// line is one line of a text with its newline, so a missing final newline is kept apart.
type line struct {
	text string
	eol  bool
}

func splitLines(s string) []line {
	var out []line
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			out = append(out, line{text: s})
			break
		}
		out = append(out, line{text: s[:i], eol: true})
		s = s[i+1:]
	}
	return out
}

type opKind byte

const (
	opEqual opKind = ' '
	opDel   opKind = '-'
	opIns   opKind = '+'
)

// op is one line of the edit script: ai indexes a (equal, delete), bi indexes b (equal, insert).
type op struct {
	kind   opKind
	ai, bi int
}

// editScript is Myers' O(ND) shortest edit script between a and b.
func editScript(a, b []line) []op {
	n, m := len(a), len(b)
	maxD := n + m
	offset := maxD + 1
	v := make([]int, 2*maxD+3)
	var trace [][]int
	var dEnd int
search:
	for d := 0; d <= maxD; d++ {
		snap := make([]int, len(v))
		copy(snap, v)
		trace = append(trace, snap)
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[offset+k-1] < v[offset+k+1]) {
				x = v[offset+k+1]
			} else {
				x = v[offset+k-1] + 1
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x++
				y++
			}
			v[offset+k] = x
			if x >= n && y >= m {
				dEnd = d
				break search
			}
		}
	}

	// Walk the trace backwards from (n, m) to (0, 0).
	var rev []op
	x, y := n, m
	for d := dEnd; d > 0; d-- {
		vd := trace[d]
		k := x - y
		var prevK int
		if k == -d || (k != d && vd[offset+k-1] < vd[offset+k+1]) {
			prevK = k + 1
		} else {
			prevK = k - 1
		}
		prevX := vd[offset+prevK]
		prevY := prevX - prevK
		for x > prevX && y > prevY {
			x--
			y--
			rev = append(rev, op{opEqual, x, y})
		}
		if x == prevX {
			y--
			rev = append(rev, op{opIns, x, y})
		} else {
			x--
			rev = append(rev, op{opDel, x, y})
		}
	}
	for x > 0 && y > 0 {
		x--
		y--
		rev = append(rev, op{opEqual, x, y})
	}
	ops := make([]op, len(rev))
	for i := range rev {
		ops[i] = rev[len(rev)-1-i]
	}
	return ops
}

// hunks cuts the script into changes with up to context equal lines around them, merging
// changes whose contexts touch (a gap of at most 2*context equal lines), as diff -u does.
func hunks(ops []op) [][]op {
	var out [][]op
	hs, he := -1, -1
	for i, o := range ops {
		if o.kind == opEqual {
			continue
		}
		s, e := max(i-context, 0), min(i+1+context, len(ops))
		if hs >= 0 && s <= he {
			he = e
			continue
		}
		if hs >= 0 {
			out = append(out, ops[hs:he])
		}
		hs, he = s, e
	}
	if hs >= 0 {
		out = append(out, ops[hs:he])
	}
	return out
}

func writeHunk(sb *strings.Builder, h []op, a, b []line) {
	aStart, bStart := -1, -1
	aLen, bLen := 0, 0
	for _, o := range h {
		switch o.kind {
		case opEqual:
			aLen++
			bLen++
		case opDel:
			aLen++
		case opIns:
			bLen++
		}
		if aStart < 0 && o.kind != opIns {
			aStart = o.ai
		}
		if bStart < 0 && o.kind != opDel {
			bStart = o.bi
		}
	}
	if aStart < 0 {
		aStart = h[0].ai
	}
	if bStart < 0 {
		bStart = h[0].bi
	}
	fmt.Fprintf(sb, "@@ -%s +%s @@\n", rangeOf(aStart, aLen), rangeOf(bStart, bLen))
	for _, o := range h {
		var l line
		if o.kind == opIns {
			l = b[o.bi]
		} else {
			l = a[o.ai]
		}
		sb.WriteByte(byte(o.kind))
		sb.WriteString(l.text)
		sb.WriteByte('\n')
		if !l.eol {
			sb.WriteString("\\ No newline at end of file\n")
		}
	}
}

// rangeOf formats a hunk range: 1-based start, and an empty range names the line before it.
func rangeOf(start, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("%d,0", start)
	case 1:
		return fmt.Sprintf("%d", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}
