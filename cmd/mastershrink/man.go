package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCmd writes a man page per command (mastershrink.1, mastershrink-plan.1, ...) into
// DIR, from the same help text as --help. Hidden: packagers run it (make man), operators
// read the pages.
func newManCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write the man pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if st, err := os.Stat(args[0]); err == nil && !st.IsDir() {
				return usageError{fmt.Errorf("%s is a file: give the folder to write the man pages into (make man writes bin/man)", args[0])}
			}
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			header := &doc.GenManHeader{Title: "MASTERSHRINK", Section: "1", Source: "mastershrink " + root.Version}
			if err := doc.GenManTree(root, header, args[0]); err != nil {
				return fmt.Errorf("write man pages: %w", err)
			}
			fmt.Fprintf(g.Out, "man pages written to %s\n", args[0])
			return nil
		},
	}
}
