package lb

import (
	"fmt"
	"strings"
)

// The scanner reads nginx's configuration syntax the way ngx_conf_read_token does, keeping the
// byte offsets of every token so the rewrite can edit the original text in place. gonginx is
// the structural parser of record (see parse.go); this scanner only locates.

type tokKind byte

const (
	tokWord tokKind = iota
	tokSemi
	tokOpen
	tokClose
)

type token struct {
	kind  tokKind
	val   string // unquoted value of a word
	start int    // byte offset of the first byte
	end   int    // byte offset after the last byte
	line  int    // 1-based line of the first byte
}

// stmt is one directive: name and arguments, ended by ';' or by a block.
type stmt struct {
	file  string
	name  token
	args  []token
	end   token // the ';' or the '{'
	block []*stmt
	close token // the '}' of a block
}

func (s *stmt) hasBlock() bool { return s.end.kind == tokOpen }

func (s *stmt) argVals() []string {
	out := make([]string, len(s.args))
	for i, a := range s.args {
		out[i] = a.val
	}
	return out
}

func scan(file, text string) ([]token, error) {
	var toks []token
	line := 1
	i := 0
	for i < len(text) {
		c := text[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(text) && text[i] != '\n' {
				i++
			}
		case c == ';':
			toks = append(toks, token{kind: tokSemi, start: i, end: i + 1, line: line})
			i++
		case c == '{':
			toks = append(toks, token{kind: tokOpen, start: i, end: i + 1, line: line})
			i++
		case c == '}':
			toks = append(toks, token{kind: tokClose, start: i, end: i + 1, line: line})
			i++
		case c == '"' || c == '\'':
			startLine := line
			var val strings.Builder
			j := i + 1
			for {
				if j >= len(text) {
					return nil, fmt.Errorf("%s:%d: unterminated quoted string", file, startLine)
				}
				d := text[j]
				if d == '\\' && j+1 < len(text) {
					switch text[j+1] {
					case '"', '\'', '\\':
						val.WriteByte(text[j+1])
					case 't':
						val.WriteByte('\t')
					case 'r':
						val.WriteByte('\r')
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte('\\')
						val.WriteByte(text[j+1])
					}
					if text[j+1] == '\n' {
						line++
					}
					j += 2
					continue
				}
				if d == '\n' {
					line++
				}
				if d == c {
					j++
					break
				}
				val.WriteByte(d)
				j++
			}
			toks = append(toks, token{kind: tokWord, val: val.String(), start: i, end: j, line: startLine})
			i = j
		default:
			j := i
			var val strings.Builder
			inVar := false
		word:
			for j < len(text) {
				d := text[j]
				switch {
				case d == '\\' && j+1 < len(text) && text[j+1] != '\n':
					val.WriteByte(d)
					val.WriteByte(text[j+1])
					j += 2
					continue
				case d == '{' && j > i && text[j-1] == '$':
					inVar = true
				case d == '}' && inVar:
					inVar = false
				case d == ' ' || d == '\t' || d == '\r' || d == '\n' || d == ';' || d == '{' || d == '}':
					break word
				}
				val.WriteByte(d)
				j++
			}
			toks = append(toks, token{kind: tokWord, val: val.String(), start: i, end: j, line: line})
			i = j
		}
	}
	return toks, nil
}

// Bounds of what a proxy config may be: real ones are a few KiB and a few blocks deep; a
// larger or deeper file is not one (a log, a generated bomb) and must not exhaust the
// operator's machine. nginx itself has no such limits.
const (
	maxConfigBytes = 4 << 20
	maxNesting     = 64
)

// parseStmts builds the statement tree of one file.
func parseStmts(file, text string) ([]*stmt, error) {
	if len(text) > maxConfigBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d MiB a proxy config can be: is nginx_config the right file?", file, len(text), maxConfigBytes>>20)
	}
	toks, err := scan(file, text)
	if err != nil {
		return nil, err
	}
	p := &stmtParser{file: file, toks: toks}
	out, err := p.block(false)
	if err != nil {
		return nil, err
	}
	return out, nil
}

type stmtParser struct {
	file  string
	toks  []token
	i     int
	depth int
}

func (p *stmtParser) block(inner bool) ([]*stmt, error) {
	if inner {
		p.depth++
		defer func() { p.depth-- }()
		if p.depth > maxNesting {
			return nil, fmt.Errorf("%s:%d: blocks nested deeper than %d: not a proxy config nginx would be given", p.file, p.toks[p.i-1].line, maxNesting)
		}
	}
	var out []*stmt
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		switch t.kind {
		case tokClose:
			if !inner {
				return nil, fmt.Errorf("%s:%d: unexpected \"}\"", p.file, t.line)
			}
			return out, nil
		case tokSemi:
			return nil, fmt.Errorf("%s:%d: unexpected \";\"", p.file, t.line)
		case tokOpen:
			return nil, fmt.Errorf("%s:%d: unexpected \"{\"", p.file, t.line)
		}
		s := &stmt{file: p.file, name: t}
		p.i++
		for {
			if p.i >= len(p.toks) {
				return nil, fmt.Errorf("%s:%d: directive %q is not terminated by \";\"", p.file, t.line, t.val)
			}
			a := p.toks[p.i]
			p.i++
			if a.kind == tokWord {
				s.args = append(s.args, a)
				continue
			}
			if a.kind == tokClose {
				return nil, fmt.Errorf("%s:%d: unexpected \"}\"", p.file, a.line)
			}
			s.end = a
			break
		}
		if s.hasBlock() {
			b, err := p.block(true)
			if err != nil {
				return nil, err
			}
			if p.i >= len(p.toks) {
				return nil, fmt.Errorf("%s:%d: unexpected end of file, expecting \"}\": close the block opened there (nginx -t on the node says the same)", p.file, s.name.line)
			}
			s.block = b
			s.close = p.toks[p.i]
			p.i++
		}
		out = append(out, s)
	}
	if inner {
		return nil, fmt.Errorf("%s: unexpected end of file, expecting \"}\": close the block left open (nginx -t on the node says the same)", p.file)
	}
	return out, nil
}
