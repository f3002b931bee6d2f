package inventory

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mastershrink/mastershrink/internal/editdist"
)

// decoder fills Go values from a yaml.Node itself, instead of yaml.v3's Decode, so that
// every problem carries its field path and line, unknown fields are caught with their path,
// and one pass reports them all.
type decoder struct {
	file  string
	lines map[string]int // field path -> line of its value
	probs []Problem
	// bad holds the fields the decoder already complained about, so validation does not
	// add a second, confusing message for the same field.
	bad map[string]bool
}

var durationType = reflect.TypeOf(Duration(0))

func (d *decoder) problem(line int, field, format string, args ...any) {
	d.markBad(field)
	d.probs = append(d.probs, Problem{File: d.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.lines[path] = n.Line
	if isNull(n) {
		return // an empty value leaves the default
	}
	if v.Type() == durationType {
		d.decodeDuration(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.problem(n.Line, path, "want a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.problem(n.Line, path, "want a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		i, err := strconv.Atoi(n.Value)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			d.problem(n.Line, path, "want an integer, got %s", kindName(n))
			return
		}
		v.SetInt(int64(i))
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || err != nil {
			d.problem(n.Line, path, "want true or false, got %s", kindName(n))
			return
		}
		v.SetBool(b)
	default:
		d.problem(n.Line, path, "cannot hold a value of Go type %s", v.Type())
	}
}

func (d *decoder) decodeDuration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.problem(n.Line, path, "want a duration like 10s or 1m30s, got %s", kindName(n))
		return
	}
	t, err := time.ParseDuration(n.Value)
	if err != nil {
		d.problem(n.Line, path, "invalid duration %q (want e.g. 10s or 1m30s)", n.Value)
		return
	}
	if t <= 0 {
		d.problem(n.Line, path, "duration %q must be positive (want e.g. 10s)", n.Value)
		return
	}
	v.SetInt(int64(t))
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.problem(n.Line, path, "want a mapping, got %s", kindName(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]int{}
	var meant []string // the fields that unknown keys of this mapping look like typos of
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		name := key.Value
		fpath := name
		if path != "" {
			fpath = path + "." + name
		}
		if first, dup := seen[name]; dup {
			d.problem(key.Line, fpath, "defined twice (first at line %d)", first)
			continue
		}
		seen[name] = key.Line
		idx, ok := fields[name]
		if !ok {
			msg := fmt.Sprintf("unknown field %q", name)
			if s := closest(name, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
				meant = append(meant, s)
			}
			d.problem(key.Line, fpath, "%s", msg)
			continue
		}
		d.decode(val, v.Field(idx), fpath)
	}
	// A typo of a required field would also show as that field missing, at the mapping's
	// first line, before the typo itself: the typo is the one thing to say.
	for _, s := range meant {
		if _, written := seen[s]; !written {
			if path != "" {
				s = path + "." + s
			}
			d.markBad(s)
		}
	}
}

// markBad keeps validation quiet about a field the decoder has already explained.
func (d *decoder) markBad(field string) {
	if d.bad == nil {
		d.bad = map[string]bool{}
	}
	d.bad[field] = true
}

// yamlFields maps each yaml key of a struct to its field index.
func yamlFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || name == "" {
			continue
		}
		m[name] = i
	}
	return m
}

// closest suggests the known field nearest to a typo, if any is near enough.
func closest(name string, fields map[string]int) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	best, bestDist := "", 3
	for _, k := range keys {
		if dist := editdist.Distance(name, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}
