package unitfile

import (
	"fmt"
	"strings"
)

// LongLineMax is systemd's LONG_LINE_MAX: the longest line of a unit file, also once its
// continuation lines are joined.
const LongLineMax = 1 << 20

// schar is one character of a parsed value together with where it came from, so that an
// edit can go back to the exact bytes. off is -1 for characters systemd synthesizes (the
// space replacing a continuation backslash, the result of an escape or a "%%"), which makes
// a value containing them non-editable in place.
type schar struct {
	b    byte
	file int
	off  int
}

type svalue []schar

func (v svalue) String() string {
	b := make([]byte, len(v))
	for i, c := range v {
		b[i] = c.b
	}
	return string(b)
}

// assignment is one "Key=Value" of a unit file after continuations are joined.
type assignment struct {
	section string
	key     string
	value   svalue
	file    int
	line    int
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

func trimSpace(v svalue) svalue {
	for len(v) > 0 && isSpace(v[0].b) {
		v = v[1:]
	}
	for len(v) > 0 && isSpace(v[len(v)-1].b) {
		v = v[:len(v)-1]
	}
	return v
}

// scanUnit splits a unit file into assignments the way systemd's config parser does:
// comment lines are skipped even inside a continuation, a line ending in an unescaped
// backslash continues on the next line with the backslash turned into a space, and a line
// (or a line joined with its continuations) must stay under LongLineMax, as systemd refuses
// the unit otherwise.
func scanUnit(fileIdx int, content string) ([]assignment, error) {
	var (
		out      []assignment
		section  string
		cont     svalue
		contLine int
	)
	finish := func(p svalue, line int) error {
		p = trimSpace(p)
		if len(p) == 0 {
			return nil
		}
		if p[0].b == '[' {
			s := p.String()
			if !strings.HasSuffix(s, "]") {
				return fmt.Errorf("line %d: invalid section header %q", line, s)
			}
			section = s[1 : len(s)-1]
			return nil
		}
		eq := -1
		for i, c := range p {
			if c.b == '=' {
				eq = i
				break
			}
		}
		if eq < 0 {
			// systemd warns and ignores such a line; so do we.
			return nil
		}
		out = append(out, assignment{
			section: section,
			key:     trimSpace(p[:eq]).String(),
			value:   trimSpace(p[eq+1:]),
			file:    fileIdx,
			line:    line,
		})
		return nil
	}

	lineNo := 0
	for start := 0; start < len(content); {
		end := strings.IndexByte(content[start:], '\n')
		next := 0
		if end < 0 {
			end = len(content)
			next = len(content)
		} else {
			end += start
			next = end + 1
		}
		lineNo++
		raw := content[start:end]
		lineStart := start
		start = next
		if strings.HasSuffix(raw, "\r") {
			raw = raw[:len(raw)-1]
		}
		// read_line(f, LONG_LINE_MAX) fails on a line of LONG_LINE_MAX bytes or more, before
		// systemd looks at what the line is: a comment is no exception.
		if len(raw) >= LongLineMax {
			return nil, fmt.Errorf("line %d: %d bytes long, over systemd's limit of %d (LONG_LINE_MAX): systemd refuses the unit", lineNo, len(raw), LongLineMax)
		}
		l := strings.TrimLeft(raw, " \t")
		if l != "" && (l[0] == '#' || l[0] == ';') {
			continue
		}
		chars := make(svalue, len(raw))
		for i := 0; i < len(raw); i++ {
			chars[i] = schar{b: raw[i], file: fileIdx, off: lineStart + i}
		}
		var p svalue
		line := lineNo
		if cont != nil {
			if len(cont)+len(chars) > LongLineMax {
				return nil, fmt.Errorf("line %d: continued through line %d, %d bytes joined, over systemd's limit of %d (LONG_LINE_MAX): systemd refuses the unit",
					contLine, lineNo, len(cont)+len(chars), LongLineMax)
			}
			p = append(cont, chars...)
			line = contLine
		} else {
			p = chars
		}
		escaped := false
		for _, c := range p {
			if escaped {
				escaped = false
			} else if c.b == '\\' {
				escaped = true
			}
		}
		if escaped {
			p[len(p)-1] = schar{b: ' ', file: fileIdx, off: -1}
			if cont == nil {
				contLine = lineNo
			}
			cont = p
			continue
		}
		cont = nil
		if err := finish(p, line); err != nil {
			return nil, err
		}
	}
	if cont != nil {
		if err := finish(cont, contLine); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// splitWords splits a unit-file value into words like systemd's extract_first_word with
// EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE: quotes may open and close anywhere inside a word,
// backslash escapes work inside and outside double quotes. Characters produced by an
// escape are marked synthetic.
func splitWords(v svalue) ([]svalue, error) {
	var words []svalue
	i := 0
	for {
		for i < len(v) && isSpace(v[i].b) {
			i++
		}
		if i >= len(v) {
			return words, nil
		}
		word := svalue{}
		var quote byte
		for ; i < len(v); i++ {
			c := v[i]
			switch {
			case quote == 0 && isSpace(c.b):
				goto done
			case quote == 0 && (c.b == '"' || c.b == '\''):
				quote = c.b
			case quote != 0 && c.b == quote:
				quote = 0
			case c.b == '\\' && quote != '\'':
				if i+1 >= len(v) {
					return nil, fmt.Errorf("trailing backslash in %q", v.String())
				}
				i++
				word = append(word, schar{b: unescape(v[i].b), file: c.file, off: -1})
			default:
				word = append(word, c)
			}
		}
	done:
		if quote != 0 {
			return nil, fmt.Errorf("unbalanced quote in %q", v.String())
		}
		words = append(words, word)
	}
}

func unescape(b byte) byte {
	switch b {
	case 'n':
		return '\n'
	case 't':
		return '\t'
	case 'r':
		return '\r'
	case 'a':
		return '\a'
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'v':
		return '\v'
	case 's':
		return ' '
	}
	return b
}

// expandSpecifiers resolves the unit specifiers mastershrink can know without the host
// ("%%", "%n", "%N", "%p", "%i"); any other specifier stays as written.
func expandSpecifiers(v svalue, unitName string) svalue {
	out := make(svalue, 0, len(v))
	prefix, instance := unitName, ""
	base := strings.TrimSuffix(unitName, ".service")
	if at := strings.IndexByte(base, '@'); at >= 0 {
		prefix, instance = base[:at], base[at+1:]
	} else {
		prefix = base
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c.b != '%' || i+1 >= len(v) {
			out = append(out, c)
			continue
		}
		var repl string
		switch v[i+1].b {
		case '%':
			repl = "%"
		case 'n':
			repl = unitName
		case 'N':
			repl = base
		case 'p':
			repl = prefix
		case 'i':
			repl = instance
		default:
			out = append(out, c)
			continue
		}
		i++
		for j := 0; j < len(repl); j++ {
			out = append(out, schar{b: repl[j], file: c.file, off: -1})
		}
	}
	return out
}

// parseEnvFile reads an EnvironmentFile the way systemd's load_env_file does: KEY=VALUE
// lines, comments at the start of a line, single quotes literal, double quotes with
// backslash escapes for `"\`$` and backslash-newline as a continuation, unquoted values
// with backslash escapes and trailing whitespace dropped.
func parseEnvFile(fileIdx int, content string) ([]envVar, error) {
	const (
		preKey = iota
		key
		preValue
		value
		valueEscape
		singleQuote
		doubleQuote
		doubleQuoteEscape
		comment
		commentEscape
	)
	var (
		out      []envVar
		state    = preKey
		k        []byte
		val      svalue
		lastSp   int // length of val before trailing unquoted whitespace
		line     = 1
		keyLine  = 1
		emitting = false
	)
	emit := func() {
		if emitting && len(k) > 0 {
			out = append(out, envVar{name: string(k), value: val, file: fileIdx, line: keyLine})
		}
		k, val, emitting = nil, nil, false
	}
	for i := 0; i < len(content); i++ {
		c := content[i]
		sc := schar{b: c, file: fileIdx, off: i}
		switch state {
		case preKey:
			switch {
			case c == '#' || c == ';':
				state = comment
			case !isSpace(c):
				state = key
				k = append(k[:0], c)
				keyLine = line
			}
		case key:
			switch {
			case c == '\n':
				// a key without '=' is ignored.
				state, k = preKey, nil
			case c == '=':
				state, emitting, val = preValue, true, svalue{}
				lastSp = 0
			default:
				k = append(k, c)
			}
		case preValue:
			switch {
			case c == '\n':
				state = preKey
				val = val[:lastSpTrim(val, lastSp)]
				emit()
			case c == '\'':
				state = singleQuote
			case c == '"':
				state = doubleQuote
			case c == '\\':
				state = valueEscape
			case !isSpace(c):
				state = value
				val = append(val, sc)
				lastSp = len(val)
			}
		case value:
			switch {
			case c == '\n':
				state = preKey
				val = val[:lastSp]
				emit()
			case c == '\\':
				state = valueEscape
			default:
				val = append(val, sc)
				if !isSpace(c) {
					lastSp = len(val)
				}
			}
		case valueEscape:
			state = value
			if c != '\n' {
				val = append(val, schar{b: c, file: fileIdx, off: -1})
				lastSp = len(val)
			}
		case singleQuote:
			if c == '\'' {
				state = preValue
				lastSp = len(val)
			} else {
				val = append(val, sc)
			}
		case doubleQuote:
			switch c {
			case '"':
				state = preValue
				lastSp = len(val)
			case '\\':
				state = doubleQuoteEscape
			default:
				val = append(val, sc)
			}
		case doubleQuoteEscape:
			state = doubleQuote
			switch {
			case c == '\n':
			case strings.IndexByte("\"\\`$", c) >= 0:
				val = append(val, schar{b: c, file: fileIdx, off: -1})
			default:
				val = append(val, schar{b: '\\', file: fileIdx, off: -1}, schar{b: c, file: fileIdx, off: -1})
			}
		case comment:
			if c == '\\' {
				state = commentEscape
			} else if c == '\n' {
				state = preKey
			}
		case commentEscape:
			state = comment
		}
		if c == '\n' {
			line++
		}
	}
	switch state {
	case singleQuote, doubleQuote, doubleQuoteEscape:
		return nil, fmt.Errorf("line %d: unterminated quote", keyLine)
	case preValue:
		val = val[:lastSpTrim(val, lastSp)]
		emit()
	case value, valueEscape:
		val = val[:lastSp]
		emit()
	}
	return out, nil
}

func lastSpTrim(v svalue, n int) int {
	if n > len(v) {
		return len(v)
	}
	return n
}

type envVar struct {
	name  string
	value svalue
	file  int
	line  int
}
