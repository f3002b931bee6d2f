package unitfile

import (
	"fmt"
	"io/fs"
	"path"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// MissingFileError means the unit's program reads its flags from a file Parse was not given
// (etcd's --config-file). Read reads it and parses again; it wraps fs.ErrNotExist.
type MissingFileError struct {
	Unit string
	Path string
	// Flag is where the unit names the file ("--config-file" or "ETCD_CONFIG_FILE").
	Flag string
}

func (e *MissingFileError) Error() string {
	return fmt.Sprintf("unit %s: %s %s was not read", e.Unit, e.Flag, e.Path)
}

func (e *MissingFileError) Unwrap() error { return fs.ErrNotExist }

// EtcdEnvFlag is the flag etcd sets from an environment variable: etcd maps every flag
// --x-y to ETCD_X_Y (pkg/flags.FlagToEnv) and reads it for each flag not on its command
// line. It returns "" for a variable that is not ETCD_*.
func EtcdEnvFlag(variable string) string {
	rest, ok := strings.CutPrefix(variable, "ETCD_")
	if !ok || rest == "" {
		return ""
	}
	return "--" + strings.ToLower(strings.ReplaceAll(rest, "_", "-"))
}

// etcdFlags completes the flags of an etcd unit with what etcd reads besides its command
// line. Every ETCD_* variable of the unit's environment is the flag of that name, placed
// before the command line's flags so that Flag returns the command line's when both are
// set (etcd 3.4+ refuses to start then; a rewrite of such a flag is refused as repeated). A
// config file (--config-file, or ETCD_CONFIG_FILE) makes etcd ignore every other flag and
// variable (etcdmain's config.parse): its flags are then the YAML's keys alone.
func (u *Unit) etcdFlags(vars map[string]envVar, order []string, paths []string, others map[string]string) error {
	var env []Flag
	for _, name := range order {
		flag := EtcdEnvFlag(name)
		if flag == "" {
			continue
		}
		v := vars[name]
		f := Flag{Name: flag, Value: v.value.String(), Var: name, FromEnv: true}
		locate(&f, v.value, nil, paths, u.Files)
		if f.File == "" {
			f.File = paths[v.file]
		}
		if f.Line == 0 {
			f.Line = v.line
		}
		env = append(env, f)
	}
	all := append(env, u.Flags...)

	var cfg Flag
	found := false
	for _, f := range all {
		if f.Name == "--config-file" && !f.FromEnv {
			cfg, found = f, true
		}
	}
	if !found {
		for _, f := range env {
			if f.Name == "--config-file" {
				cfg, found = f, true
			}
		}
	}
	if !found || cfg.Value == "" {
		u.Flags = all
		return nil
	}
	where := "--config-file"
	if cfg.FromEnv {
		where = cfg.Var
	}
	if !path.IsAbs(cfg.Value) {
		return fmt.Errorf("unit %s: %s %q is not absolute (etcd would read it relative to its working directory)", u.Name, where, cfg.Value)
	}
	content, ok := others[cfg.Value]
	if !ok {
		return &MissingFileError{Unit: u.Name, Path: cfg.Value, Flag: where}
	}
	flags, err := etcdConfigFlags(cfg.Value, content)
	if err != nil {
		return fmt.Errorf("unit %s: %w", u.Name, err)
	}
	u.ConfigFile = cfg.Value
	u.Files[cfg.Value] = content
	u.envContents[cfg.Value] = content
	u.Flags = append([]Flag{cfg}, flags...)
	return nil
}

// etcdSecurityKeys map the keys of client-transport-security and peer-transport-security
// (embed.securityConfig's JSON names) to the flag suffix etcd's command line uses. Keys
// etcd does not know (a "peer-client-cert-auth" under peer-transport-security, as some
// guides write) are ignored by etcd, and so here.
var etcdSecurityKeys = map[string]string{
	"cert-file":        "cert-file",
	"key-file":         "key-file",
	"client-cert-file": "client-cert-file",
	"client-key-file":  "client-key-file",
	"client-cert-auth": "client-cert-auth",
	"trusted-ca-file":  "trusted-ca-file",
	"auto-tls":         "auto-tls",
}

// etcdConfigFlags reads etcd's YAML config file as flags: a top-level key is the flag of
// that name (etcd's YAML keys are its flag names), a key under client-transport-security
// is the client flag (cert-file is --cert-file), one under peer-transport-security the peer
// flag (--peer-cert-file). A scalar written plainly or quoted without escapes can be
// edited in place; anything else (a list, an escape, a block scalar) is read but not.
func etcdConfigFlags(file, content string) ([]Flag, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(content), &doc); err != nil {
		return nil, fmt.Errorf("etcd config file %s: %w", file, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("etcd config file %s: line %d: not a mapping of keys to values", file, root.Line)
	}
	starts := lineStarts(content)
	var out []Flag
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "client-transport-security", "peer-transport-security":
			if v.Kind != yaml.MappingNode {
				continue // empty: no TLS
			}
			prefix := "--"
			if k.Value == "peer-transport-security" {
				prefix = "--peer-"
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				sk, sv := v.Content[j], v.Content[j+1]
				if suffix, ok := etcdSecurityKeys[sk.Value]; ok {
					out = append(out, yamlFlag(prefix+suffix, k.Value+"."+sk.Value, sv, file, content, starts))
				}
			}
		default:
			if v.Kind == yaml.MappingNode {
				continue // no etcd flag takes a mapping
			}
			out = append(out, yamlFlag("--"+k.Value, k.Value, v, file, content, starts))
		}
	}
	return out, nil
}

// yamlFlag makes the flag of one YAML value, with its byte span when it can be edited.
func yamlFlag(name, key string, v *yaml.Node, file, content string, starts []int) Flag {
	f := Flag{Name: name, Key: key, File: file, Line: v.Line}
	switch {
	case v.Kind == yaml.SequenceNode:
		var items []string
		for _, it := range v.Content {
			items = append(items, it.Value)
		}
		f.Value = strings.Join(items, ",")
		f.notEditable = fmt.Errorf("%w: %s in %s line %d is a YAML list", ErrNotEditable, key, file, v.Line)
		return f
	case v.Kind != yaml.ScalarNode:
		f.notEditable = fmt.Errorf("%w: %s in %s line %d is not a scalar", ErrNotEditable, key, file, v.Line)
		return f
	case v.Tag == "!!null":
		f.notEditable = fmt.Errorf("%w: %s in %s line %d has no value", ErrNotEditable, key, file, v.Line)
		return f
	}
	f.Value = v.Value
	at, ok := byteOffset(content, starts, v.Line, v.Column)
	if ok {
		switch v.Style {
		case 0: // plain
			if strings.HasPrefix(content[at:], v.Value) {
				f.start, f.end = at, at+len(v.Value)
				return f
			}
		case yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
			q := content[at]
			in := at + 1
			if (q == '\'' || q == '"') && strings.HasPrefix(content[in:], v.Value) && in+len(v.Value) < len(content) && content[in+len(v.Value)] == q {
				f.start, f.end = in, in+len(v.Value)
				return f
			}
		}
	}
	f.notEditable = fmt.Errorf("%w: %s=%s in %s line %d is written with escapes, folding or a block style", ErrNotEditable, key, v.Value, file, v.Line)
	return f
}

func lineStarts(content string) []int {
	starts := []int{0}
	for i := 0; i < len(content); i++ {
		if content[i] == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// byteOffset turns yaml.v3's 1-based line and character column into a byte offset.
func byteOffset(content string, starts []int, line, col int) (int, bool) {
	if line < 1 || line > len(starts) || col < 1 {
		return 0, false
	}
	at := starts[line-1]
	for c := 1; c < col; c++ {
		if at >= len(content) || content[at] == '\n' {
			return 0, false
		}
		_, size := utf8.DecodeRuneInString(content[at:])
		at += size
	}
	return at, at < len(content)
}
