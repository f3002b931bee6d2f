package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

type manOptions struct {
	*globalOptions
	// Dir receives the pages.
	Dir string
}

func (o *manOptions) validate() error {
	if st, err := os.Stat(o.Dir); err == nil && !st.IsDir() {
		return usageError{fmt.Errorf("%s is a file: give the folder to write the man pages into (make man writes bin/man)", o.Dir)}
	}
	return nil
}

// newManCmd writes a man page per command (mastershrink.1, mastershrink-plan.1, ...) into
// DIR, from the same help text as --help. Hidden: packagers run it (make man), operators
// read the pages.
func newManCmd(g *globalOptions, runF func(*manOptions) error) *cobra.Command {
	o := &manOptions{globalOptions: g}
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write the man pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Dir = args[0]
			return runOrHook(cmd.Context(), o, runF, func(_ context.Context, o *manOptions) error { return runMan(cmd.Root(), o) })
		},
	}
}

// runMan writes the pages of every command under root.
func runMan(root *cobra.Command, o *manOptions) error {
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	root.DisableAutoGenTag = true
	header := &doc.GenManHeader{Title: "MASTERSHRINK", Section: "1", Source: "mastershrink " + root.Version}
	if err := doc.GenManTree(root, header, o.Dir); err != nil {
		return fmt.Errorf("write man pages: %w", err)
	}
	fmt.Fprintf(o.Out, "man pages written to %s\n", o.Dir)
	return nil
}
