package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/observe"
)

func newCertsCmd(subcommands ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Inspect cluster certificates and re-sign them without removed addresses",
		Long: `Read certificates into the facts a cfssl CSR needs (inspect), and re-sign one with the
cluster CA, dropping or adding SANs (regen). cfssl runs in-process; nothing is shelled out.`,
	}
	cmd.AddCommand(subcommands...)
	// pflag quotes a whole argument in "bad flag syntax: ARG", and a pasted PEM starts with
	// dashes: the key would be printed. Inherited by both subcommands.
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		msg := err.Error()
		if strings.Contains(msg, "-----BEGIN") || strings.Contains(msg, "PRIVATE KEY") || len(msg) > 300 || strings.ContainsAny(msg, "\n\r") {
			return usageError{fmt.Errorf("%s: an argument holds a PEM block or other content (not shown) where a flag or a file name goes: give the path of the file instead of its content", c.CommandPath())}
		}
		return flagError(c, err)
	})
	return cmd
}

// hostPathRE matches HOST:PATH with an absolute or relative path after the colon; a
// local file of that name wins.
var hostPathRE = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9._-]*):(.+)$`)

// inputReader reads local files, and HOST:PATH through the inventory's hosts: the inventory
// is loaded and the cluster opened on the first HOST:PATH, whose connection then serves the
// whole command.
type inputReader struct {
	g *globalOptions
	c *observe.Cluster
}

func newInputReader(g *globalOptions) *inputReader { return &inputReader{g: g} }

// maxArgPath bounds what is taken for a file name: longer, or with a line break, it is
// content pasted where a path goes (often a key: "$(cat ca-key.pem)"), and is not echoed.
const maxArgPath = 1024

// checkPathArg refuses an argument that cannot be a path, without repeating it.
func checkPathArg(arg string) error {
	switch {
	case strings.Contains(arg, "-----BEGIN") || strings.Contains(arg, "PRIVATE KEY"):
		return usageError{errors.New("an argument holds a PEM block (not shown), where a file name goes: give the path of the file instead of its content")}
	case len(arg) > maxArgPath || strings.ContainsAny(arg, "\n\r\x00"):
		return usageError{fmt.Errorf("an argument of %d characters starting %q is not a file name: give the path of the file", len(arg), clipArg(arg))}
	}
	return nil
}

// clipArg is a short, single-line prefix of an argument for messages.
func clipArg(arg string) string {
	if i := strings.IndexAny(arg, "\n\r\x00"); i >= 0 {
		arg = arg[:i]
	}
	if r := []rune(arg); len(r) > 24 {
		return string(r[:24]) + "..."
	}
	return arg
}

func (r *inputReader) read(ctx context.Context, arg string) ([]byte, error) {
	if err := checkPathArg(arg); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(arg)
	if err == nil {
		return data, nil
	}
	m := hostPathRE.FindStringSubmatch(arg)
	if m == nil && errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w; check the path (HOST:PATH reads a file on a host of the inventory)", arg, err)
	}
	if m == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", arg, err)
	}
	name, path := m[1], m[2]
	h, err := r.host(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", arg, err)
	}
	data, err = h.ReadFile(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("read %s on %s: %w", path, name, err)
	}
	return data, nil
}

func (r *inputReader) host(ctx context.Context, name string) (host.Host, error) {
	if r.c == nil {
		if r.g.Inventory == "" {
			return nil, usageError{fmt.Errorf("no such local file, and reading HOST:PATH needs the inventory: give -i inventory.yaml")}
		}
		inv, err := inventory.Load(r.g.Inventory)
		if err != nil {
			return nil, err
		}
		r.c = observe.Open(inv, r.g.observeOptions())
	}
	if _, ok := r.c.Inv.Host(name); !ok {
		return nil, fmt.Errorf("no local file of that name and no host %q in the inventory %s (its hosts: %s)", name, r.c.Inv.File, strings.Join(r.c.Inv.HostNames(), ", "))
	}
	return r.c.Host(ctx, name)
}

func (r *inputReader) Close() {
	if r.c != nil {
		r.c.Close()
	}
}
