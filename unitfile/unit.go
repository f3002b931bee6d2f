package unitfile

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/mastershrink/mastershrink/host/machine"
)

var (
	// ErrFlagNotFound means the unit's effective ExecStart does not carry the flag.
	ErrFlagNotFound = errors.New("flag not found")
	// ErrFlagRepeated means the flag is given more than once; which occurrence to edit is
	// the operator's call (for list flags pflag appends them).
	ErrFlagRepeated = errors.New("flag given more than once")
	// ErrNotEditable means the flag's value is not one contiguous run of bytes in one file
	// (it contains an escape, a "%%", a quote in the middle, or spans a continuation).
	ErrNotEditable = errors.New("flag value cannot be edited in place")
	// ErrUnsafeValue means a new value holds characters that would need quoting or escaping
	// (whitespace, quotes, backslash, '$', '%', '#', ';').
	ErrUnsafeValue = errors.New("value needs quoting")
	// ErrUnitNotFound means no fragment file exists for the unit.
	ErrUnitNotFound = errors.New("unit not found")
)

// Flag is one "--name=value" or "--name value" of the effective ExecStart.
type Flag struct {
	// Name includes the dashes: "--etcd-servers".
	Name  string `json:"name"`
	Value string `json:"value"`
	// File is where the value is written: the fragment, a drop-in, or an EnvironmentFile.
	File string `json:"file"`
	// Var is the variable the value came from (EnvironmentFile or Environment=), else "".
	// For etcd it may be the ETCD_<FLAG> variable etcd reads by itself (FromEnv).
	Var string `json:"var,omitempty"`
	// FromEnv is true for a flag etcd takes from its environment (ETCD_CERT_FILE is
	// --cert-file) rather than from its command line.
	FromEnv bool `json:"from_env,omitempty"`
	// Key is the YAML key of etcd's --config-file the value is written under
	// ("peer-transport-security.cert-file"), else "".
	Key string `json:"key,omitempty"`
	// Line is the 1-based line of the value's first byte in File.
	Line int `json:"line"`
	// Separate is true for the "--name value" form.
	Separate bool `json:"separate,omitempty"`

	start, end  int   // byte span of the value in File
	notEditable error // why the value cannot be edited in place, nil when it can
}

// EnvironmentFile is one EnvironmentFile= of the unit.
type EnvironmentFile struct {
	Path string `json:"path"`
	// Optional is the "-" prefix: a missing file is not an error.
	Optional bool `json:"optional,omitempty"`
	// Missing is true when the file was not found (only possible when Optional).
	Missing bool `json:"missing,omitempty"`
}

// withEnvironmentFile adds one EnvironmentFile= value to the list before it. As in systemd,
// an empty value empties the list, and a "-" before the path lets the file be missing.
func withEnvironmentFile(refs []EnvironmentFile, v string) []EnvironmentFile {
	if v == "" {
		return nil
	}
	ef := EnvironmentFile{Path: v}
	if strings.HasPrefix(v, "-") {
		ef.Optional, ef.Path = true, strings.TrimSpace(v[1:])
	}
	return append(refs, ef)
}

// Unit is what mastershrink knows of one systemd service's command line.
type Unit struct {
	Name         string   `json:"name"`
	FragmentPath string   `json:"fragment_path"`
	DropIns      []string `json:"drop_ins,omitempty"`
	// EnvironmentFiles are the effective EnvironmentFile= paths, in order.
	EnvironmentFiles []EnvironmentFile `json:"environment_files,omitempty"`
	// Files holds every file read: path -> content.
	Files map[string]string `json:"-"`
	// ExecStart is the effective command line (the last drop-in wins), variables expanded,
	// words joined by single spaces.
	ExecStart string `json:"exec_start"`
	// Args is the effective command line split into words, variables expanded.
	Args []string `json:"args"`
	// Flags are the flags the program takes, wherever systemd or the program reads them: the
	// command line, and for etcd its ETCD_* environment variables or, when it has one, its
	// --config-file YAML (which makes etcd ignore every other flag and variable).
	Flags []Flag `json:"flags"`
	// ConfigFile is etcd's --config-file (or ETCD_CONFIG_FILE), "" when it has none.
	ConfigFile string `json:"config_file,omitempty"`

	// envContents holds the files read besides the fragment and drop-ins: EnvironmentFiles
	// and etcd's config file.
	envContents map[string]string
	// environ is the environment the unit gives its program (Environment=, then the
	// EnvironmentFiles in order), for variables that name files but are no flag
	// (kubespray's ETCDCTL_CERT).
	environ map[string]string
}

// Env returns a variable of the environment the unit gives its program.
func (u *Unit) Env(name string) (string, bool) {
	v, ok := u.environ[name]
	return v, ok
}

// Parse interprets a unit from its files. files holds the fragment and drop-ins (path ->
// content); dropIns is their order; envFiles holds the EnvironmentFiles that exist and, for
// etcd, its --config-file. When etcd names a config file envFiles lacks, Parse returns a
// *MissingFileError naming it, so the caller can read it and parse again. Parse is pure.
func Parse(name, fragmentPath string, files map[string]string, dropIns []string, envFiles map[string]string) (*Unit, error) {
	name = NormalizeName(name)
	u := &Unit{
		Name:         name,
		FragmentPath: fragmentPath,
		DropIns:      append([]string(nil), dropIns...),
		Files:        map[string]string{},
		envContents:  map[string]string{},
	}
	paths := append([]string{fragmentPath}, dropIns...)
	var (
		execStarts []svalue
		environ    []svalue
		envRefs    []EnvironmentFile
	)
	for idx, p := range paths {
		content, ok := files[p]
		if !ok {
			return nil, fmt.Errorf("unit %s: no content given for %s", name, p)
		}
		u.Files[p] = content
		as, err := scanUnit(idx, content)
		if err != nil {
			return nil, fmt.Errorf("unit %s: %s: %w", name, p, err)
		}
		for _, a := range as {
			if a.section != "Service" {
				continue
			}
			switch a.key {
			case "ExecStart":
				if len(a.value) == 0 {
					execStarts = nil
				} else {
					execStarts = append(execStarts, a.value)
				}
			case "Environment":
				if len(a.value) == 0 {
					environ = nil
				} else {
					environ = append(environ, a.value)
				}
			case "EnvironmentFile":
				envRefs = withEnvironmentFile(envRefs, a.value.String())
			}
		}
	}
	switch len(execStarts) {
	case 0:
		return nil, fmt.Errorf("unit %s: no ExecStart", name)
	case 1:
	default:
		return nil, fmt.Errorf("unit %s: %d ExecStart commands, expected one (a drop-in must reset ExecStart= first)", name, len(execStarts))
	}

	// Variables: Environment= first, then the files in order; later assignments win.
	vars := map[string]envVar{}
	var varOrder []string // names in order of first assignment, for a stable flag order
	setVar := func(v envVar) {
		if _, ok := vars[v.name]; !ok {
			varOrder = append(varOrder, v.name)
		}
		vars[v.name] = v
	}
	for _, e := range environ {
		words, err := splitWords(expandSpecifiers(e, name))
		if err != nil {
			return nil, fmt.Errorf("unit %s: Environment=: %w", name, err)
		}
		for _, w := range words {
			s := w.String()
			eq := strings.IndexByte(s, '=')
			if eq <= 0 {
				continue
			}
			setVar(envVar{name: s[:eq], value: w[eq+1:], file: w[0].file, line: 0})
		}
	}
	for i := range envRefs {
		ef := &envRefs[i]
		if !path.IsAbs(ef.Path) {
			return nil, fmt.Errorf("unit %s: EnvironmentFile %q is not absolute", name, ef.Path)
		}
		content, ok := envFiles[ef.Path]
		if !ok {
			if !ef.Optional {
				return nil, fmt.Errorf("unit %s: EnvironmentFile %s: %w", name, ef.Path, ErrUnitNotFound)
			}
			ef.Missing = true
			continue
		}
		idx := len(paths)
		paths = append(paths, ef.Path)
		u.Files[ef.Path] = content
		u.envContents[ef.Path] = content
		evs, err := parseEnvFile(idx, content)
		if err != nil {
			return nil, fmt.Errorf("unit %s: EnvironmentFile %s: %w", name, ef.Path, err)
		}
		for _, ev := range evs {
			setVar(ev)
		}
	}
	u.EnvironmentFiles = envRefs
	u.environ = map[string]string{}
	for n, v := range vars {
		u.environ[n] = v.value.String()
	}

	words, err := splitWords(expandSpecifiers(execStarts[0], name))
	if err != nil {
		return nil, fmt.Errorf("unit %s: ExecStart: %w", name, err)
	}
	args, argVars := expandVars(words, vars)
	if len(args) == 0 {
		return nil, fmt.Errorf("unit %s: empty ExecStart", name)
	}
	// The executable may carry the prefixes "-@+!:".
	for len(args[0]) > 1 && strings.IndexByte("-@+!:", args[0][0].b) >= 0 {
		args[0] = args[0][1:]
	}
	for _, a := range args {
		u.Args = append(u.Args, a.String())
	}
	u.ExecStart = strings.Join(u.Args, " ")

	for i := 1; i < len(args); i++ {
		a := args[i].String()
		if !strings.HasPrefix(a, "--") || a == "--" {
			continue
		}
		f := Flag{Name: a}
		var val svalue
		varName := argVars[i]
		var eqChar *schar
		if eq := strings.IndexByte(a, '='); eq >= 0 {
			f.Name = a[:eq]
			val = args[i][eq+1:]
			eqChar = &args[i][eq]
		} else if i+1 < len(args) && !strings.HasPrefix(args[i+1].String(), "-") {
			i++
			val = args[i]
			f.Separate = true
			varName = argVars[i]
		} else {
			// A boolean flag without a value.
			f.notEditable = fmt.Errorf("%w: %s has no value", ErrNotEditable, f.Name)
			f.File = paths[args[i][0].file]
			u.Flags = append(u.Flags, f)
			continue
		}
		f.Value = val.String()
		f.Var = varName
		locate(&f, val, eqChar, paths, u.Files)
		u.Flags = append(u.Flags, f)
	}
	if path.Base(u.Args[0]) == "etcd" {
		if err := u.etcdFlags(vars, varOrder, paths, envFiles); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// locate fills the flag's File, Line and byte span, or the reason it cannot be edited.
func locate(f *Flag, val svalue, eq *schar, paths []string, all map[string]string) {
	if len(val) == 0 {
		if eq == nil || eq.off < 0 {
			f.notEditable = fmt.Errorf("%w: %s has an empty value that is not written as --flag=", ErrNotEditable, f.Name)
			if eq != nil {
				f.File = paths[eq.file]
			}
			return
		}
		f.File = paths[eq.file]
		content := all[f.File]
		at := eq.off + 1
		// --flag="" : insert between the quotes.
		if at+1 < len(content) && (content[at] == '"' || content[at] == '\'') && content[at+1] == content[at] {
			at++
		}
		f.start, f.end = at, at
		f.Line = 1 + strings.Count(content[:at], "\n")
		return
	}
	first := val[0]
	f.File = paths[first.file]
	content := all[f.File]
	for i, c := range val {
		if c.off < 0 || c.file != first.file || c.off != first.off+i {
			f.notEditable = fmt.Errorf("%w: %s=%s in %s is written with escapes, quotes inside it or a line continuation", ErrNotEditable, f.Name, f.Value, f.File)
			if first.off >= 0 {
				f.Line = 1 + strings.Count(content[:first.off], "\n")
			}
			return
		}
	}
	f.start, f.end = first.off, first.off+len(val)
	f.Line = 1 + strings.Count(content[:f.start], "\n")
}

// expandVars applies systemd's variable substitution to ExecStart words: a word that is
// exactly "$NAME" becomes the variable's value split at whitespace (no unquoting), "${NAME}"
// inside a word is replaced in place, "$$" is a literal '$'. Unknown variables are empty.
// It also returns, per resulting word, the variable its characters came from ("" if none).
func expandVars(words []svalue, vars map[string]envVar) ([]svalue, []string) {
	var out []svalue
	var from []string
	for _, w := range words {
		s := w.String()
		if len(s) > 1 && s[0] == '$' && isVarName(s[1:]) {
			v := vars[s[1:]]
			for _, part := range splitSpace(v.value) {
				out = append(out, part)
				from = append(from, s[1:])
			}
			continue
		}
		var nw svalue
		varName := ""
		for i := 0; i < len(w); i++ {
			if w[i].b != '$' || i+1 >= len(w) {
				nw = append(nw, w[i])
				continue
			}
			if w[i+1].b == '$' {
				nw = append(nw, schar{b: '$', file: w[i].file, off: -1})
				i++
				continue
			}
			if w[i+1].b == '{' {
				end := -1
				for j := i + 2; j < len(w); j++ {
					if w[j].b == '}' {
						end = j
						break
					}
				}
				if end > 0 && isVarName(w[i+2:end].String()) {
					name := w[i+2 : end].String()
					nw = append(nw, vars[name].value...)
					varName = name
					i = end
					continue
				}
			}
			nw = append(nw, w[i])
		}
		out = append(out, nw)
		from = append(from, varName)
	}
	return out, from
}

func isVarName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

func splitSpace(v svalue) []svalue {
	var out []svalue
	i := 0
	for i < len(v) {
		for i < len(v) && isSpace(v[i].b) {
			i++
		}
		j := i
		for j < len(v) && !isSpace(v[j].b) {
			j++
		}
		if j > i {
			out = append(out, v[i:j])
		}
		i = j
	}
	return out
}

// NormalizeName adds ".service" to a bare unit name.
func NormalizeName(name string) string {
	if name == "" || strings.Contains(path.Base(name), ".") {
		return name
	}
	return name + ".service"
}

// Flag returns the flag's last occurrence (the one pflag keeps for a scalar flag). name may
// be given with or without the leading dashes.
func (u *Unit) Flag(name string) (Flag, bool) {
	name = flagName(name)
	for i := len(u.Flags) - 1; i >= 0; i-- {
		if u.Flags[i].Name == name {
			return u.Flags[i], true
		}
	}
	return Flag{}, false
}

// Editable reports whether SetFlag can rewrite this flag's value, and why not.
func (f Flag) Editable() error { return f.notEditable }

func flagName(name string) string {
	if strings.HasPrefix(name, "--") {
		return name
	}
	return "--" + strings.TrimLeft(name, "-")
}

// SafeValue reports whether v can be written into a unit file or an EnvironmentFile as is,
// in any quoting context: URLs, host:port lists, paths, numbers, "name=url" lists.
func SafeValue(v string) error {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("._:/,=@+-[]", c) >= 0:
		default:
			return fmt.Errorf("%w: %q has %q", ErrUnsafeValue, v, c)
		}
	}
	return nil
}

// SetFlag plans the rewrite of one flag's value where it is written (the unit line, a
// drop-in, or the EnvironmentFile variable), changing nothing else. Setting the value the
// flag already has yields no change. hostName names the machine in the returned FileChange.
func (u *Unit) SetFlag(hostName, name, value string) ([]machine.FileChange, error) {
	nu, changed, err := u.setFlag(name, value)
	if err != nil || !changed {
		return nil, err
	}
	return u.diff(hostName, nu), nil
}

// SetFlags plans several flag rewrites on one unit; they compose (each is applied to the
// result of the previous one, in name order) and the result has one FileChange per file.
func (u *Unit) SetFlags(hostName string, values map[string]string) ([]machine.FileChange, error) {
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Strings(names)
	cur := u
	for _, n := range names {
		nu, changed, err := cur.setFlag(n, values[n])
		if err != nil {
			return nil, err
		}
		if changed {
			cur = nu
		}
	}
	return u.diff(hostName, cur), nil
}

func (u *Unit) setFlag(name, value string) (*Unit, bool, error) {
	name = flagName(name)
	var found []Flag
	for _, f := range u.Flags {
		// etcd's "--name=${ETCD_NAME}" with ETCD_NAME in its EnvironmentFile is one value
		// reached twice (command line and environment): one place to edit.
		if f.Name == name && !(len(found) > 0 && f.notEditable == nil && found[0].notEditable == nil &&
			f.File == found[0].File && f.start == found[0].start && f.end == found[0].end) {
			found = append(found, f)
		}
	}
	switch len(found) {
	case 0:
		return nil, false, fmt.Errorf("unit %s: %s: %w", u.Name, name, ErrFlagNotFound)
	case 1:
	default:
		var where []string
		for _, f := range found {
			where = append(where, fmt.Sprintf("%s:%d", f.File, f.Line))
		}
		return nil, false, fmt.Errorf("unit %s: %s at %s: %w", u.Name, name, strings.Join(where, ", "), ErrFlagRepeated)
	}
	f := found[0]
	if f.Value == value {
		return u, false, nil
	}
	if err := SafeValue(value); err != nil {
		return nil, false, fmt.Errorf("unit %s: %s: %w", u.Name, name, err)
	}
	if f.notEditable != nil {
		return nil, false, fmt.Errorf("unit %s: %w", u.Name, f.notEditable)
	}
	old := u.Files[f.File]
	edited := old[:f.start] + value + old[f.end:]
	nu, err := u.With(map[string]string{f.File: edited})
	if err != nil {
		return nil, false, fmt.Errorf("unit %s: after setting %s: %w", u.Name, name, err)
	}
	// The edit must change exactly this flag: same flags, same order, one value different.
	if len(nu.Flags) != len(u.Flags) {
		return nil, false, fmt.Errorf("unit %s: setting %s changed the number of flags from %d to %d", u.Name, name, len(u.Flags), len(nu.Flags))
	}
	for i := range u.Flags {
		a, b := u.Flags[i], nu.Flags[i]
		if a.Name != b.Name || (a.Name != name && a.Value != b.Value) || (a.Name == name && b.Value != value) {
			return nil, false, fmt.Errorf("unit %s: setting %s would change %s from %q to %q", u.Name, name, b.Name, a.Value, b.Value)
		}
	}
	return nu, true, nil
}

// With returns the unit re-parsed with some files' contents replaced (path -> content), for
// composing edits and checking a planned change.
func (u *Unit) With(contents map[string]string) (*Unit, error) {
	files := map[string]string{}
	env := map[string]string{}
	for p, c := range u.Files {
		if _, isEnv := u.envContents[p]; isEnv {
			env[p] = c
		} else {
			files[p] = c
		}
	}
	for p, c := range contents {
		if _, isEnv := u.envContents[p]; isEnv {
			env[p] = c
		} else if _, ok := files[p]; ok {
			files[p] = c
		} else {
			return nil, fmt.Errorf("unit %s: %s is not one of its files", u.Name, p)
		}
	}
	return Parse(u.Name, u.FragmentPath, files, u.DropIns, env)
}

func (u *Unit) diff(hostName string, nu *Unit) []machine.FileChange {
	var out []machine.FileChange
	for _, p := range u.filePaths() {
		if u.Files[p] != nu.Files[p] {
			out = append(out, machine.FileChange{Host: hostName, Path: p, Before: u.Files[p], After: nu.Files[p]})
		}
	}
	return out
}

// filePaths lists the unit's files in reading order: fragment, drop-ins, environment files.
func (u *Unit) filePaths() []string {
	ps := append([]string{u.FragmentPath}, u.DropIns...)
	for _, ef := range u.EnvironmentFiles {
		if !ef.Missing {
			ps = append(ps, ef.Path)
		}
	}
	if u.ConfigFile != "" {
		ps = append(ps, u.ConfigFile)
	}
	return ps
}
