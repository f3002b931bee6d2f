package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mastershrink/mastershrink/internal/version"
)

func newVersionCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of mastershrink",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(g.Out, "mastershrink", version.String())
			return err
		},
	}
}
