package unitfile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/mastershrink/mastershrink/host/machine"
)

// unitDirs are searched, in systemd's order of precedence, when neither D-Bus nor
// systemctl can say where a unit lives.
var unitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"}

// Read reads a unit's fragment, drop-ins and EnvironmentFiles from a host and parses them.
// Where the files are comes from systemd (D-Bus, else `systemctl show`), else from the
// usual unit folders.
func Read(ctx context.Context, h machine.Host, unit string) (*Unit, error) {
	name := NormalizeName(unit)
	frag, dropIns, err := Locate(ctx, h, name)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for _, p := range append([]string{frag}, dropIns...) {
		b, err := h.ReadFile(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("unit %s on %s: read %s: %w", name, h.Name(), p, err)
		}
		files[p] = string(b)
	}
	refs, err := environmentFileRefs(name, frag, files, dropIns)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, ef := range refs {
		if !path.IsAbs(ef.Path) {
			continue // Parse reports it
		}
		b, err := h.ReadFile(ctx, ef.Path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // Parse decides whether the "-" prefix allows it
		}
		if err != nil {
			return nil, fmt.Errorf("unit %s on %s: read EnvironmentFile %s: %w", name, h.Name(), ef.Path, err)
		}
		env[ef.Path] = string(b)
	}
	u, err := Parse(name, frag, files, dropIns, env)
	// etcd's --config-file is known only once the command line and environment are parsed.
	var missing *MissingFileError
	if errors.As(err, &missing) {
		b, rerr := h.ReadFile(ctx, missing.Path)
		if rerr != nil {
			return nil, fmt.Errorf("unit %s on %s: read %s %s: %w", name, h.Name(), missing.Flag, missing.Path, rerr)
		}
		env[missing.Path] = string(b)
		u, err = Parse(name, frag, files, dropIns, env)
	}
	if err != nil {
		return nil, fmt.Errorf("on %s: %w", h.Name(), err)
	}
	return u, nil
}

// Locate finds a unit's fragment and drop-ins on a host. A unit systemd does not know
// returns an error wrapping ErrUnitNotFound.
func Locate(ctx context.Context, h machine.Host, name string) (fragment string, dropIns []string, err error) {
	name = NormalizeName(name)
	if sd, err := h.Systemd(ctx); err == nil {
		st, serr := sd.Status(ctx, name)
		_ = sd.Close()
		if serr == nil {
			if st.LoadState == "not-found" || (st.FragmentPath == "" && st.LoadState != "") {
				return "", nil, fmt.Errorf("unit %s on %s: %w", name, h.Name(), ErrUnitNotFound)
			}
			if st.FragmentPath != "" {
				return st.FragmentPath, st.DropInPaths, nil
			}
		}
	}
	res, err := h.Run(ctx, "systemctl show -p LoadState -p FragmentPath -p DropInPaths -- "+machine.Quote(name))
	if err == nil {
		props := parseShow(string(res.Stdout))
		if props["LoadState"] == "not-found" {
			return "", nil, fmt.Errorf("unit %s on %s: %w", name, h.Name(), ErrUnitNotFound)
		}
		if f := props["FragmentPath"]; f != "" {
			return f, strings.Fields(props["DropInPaths"]), nil
		}
	}
	return searchUnitDirs(ctx, h, name)
}

func parseShow(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// searchUnitDirs mimics systemd's lookup: the first folder holding the unit wins; drop-ins
// from every folder are merged by file name (a name in an earlier folder masks the same
// name in a later one) and applied in file-name order.
func searchUnitDirs(ctx context.Context, h machine.Host, name string) (string, []string, error) {
	frag := ""
	for _, d := range unitDirs {
		p := d + "/" + name
		if fi, err := h.Stat(ctx, p); err == nil && !fi.IsDir {
			frag = p
			break
		}
	}
	if frag == "" {
		return "", nil, fmt.Errorf("unit %s on %s: not in %s: %w", name, h.Name(), strings.Join(unitDirs, ", "), ErrUnitNotFound)
	}
	var globs []string
	for _, d := range unitDirs {
		globs = append(globs, machine.Quote(d+"/"+name+".d")+"/*.conf")
	}
	// ls prints nothing for a glob that matched nothing (2>/dev/null); "true" keeps the exit 0.
	res, err := h.Run(ctx, "ls -1d "+strings.Join(globs, " ")+" 2>/dev/null; true")
	if err != nil {
		return "", nil, fmt.Errorf("unit %s on %s: list drop-ins: %w", name, h.Name(), err)
	}
	byBase := map[string]string{}
	for _, p := range strings.Split(string(res.Stdout), "\n") {
		p = strings.TrimSpace(p)
		if p == "" || strings.Contains(p, "*") {
			continue
		}
		if _, ok := byBase[path.Base(p)]; !ok {
			byBase[path.Base(p)] = p
		}
	}
	bases := make([]string, 0, len(byBase))
	for b := range byBase {
		bases = append(bases, b)
	}
	sort.Strings(bases)
	var dropIns []string
	for _, b := range bases {
		dropIns = append(dropIns, byBase[b])
	}
	return frag, dropIns, nil
}

// environmentFileRefs returns the effective EnvironmentFile= entries of the unit files.
func environmentFileRefs(name, frag string, files map[string]string, dropIns []string) ([]EnvironmentFile, error) {
	var refs []EnvironmentFile
	for idx, p := range append([]string{frag}, dropIns...) {
		as, err := scanUnit(idx, files[p])
		if err != nil {
			return nil, fmt.Errorf("unit %s: %s: %w", name, p, err)
		}
		for _, a := range as {
			if a.section != "Service" || a.key != "EnvironmentFile" {
				continue
			}
			refs = withEnvironmentFile(refs, a.value.String())
		}
	}
	return refs, nil
}
