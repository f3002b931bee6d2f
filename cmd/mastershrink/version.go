package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/mastershrink/mastershrink/internal/version"
)

func newVersionCmd(g *globalOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version [-o text|json|yaml]",
		Short: "Print the version of mastershrink",
		Long: `version prints the release (or the module pseudo-version of a plain go build), the commit,
and with -o json or yaml also whether the tree was modified, the commit time, the Go version
and the platform. Plans record the version line: apply refuses a plan from another version.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			info := version.Get()
			switch output {
			case "text":
				_, err := fmt.Fprintln(g.Out, "mastershrink", info.String())
				return err
			case "json":
				out := struct {
					FormatVersion int `json:"format_version"`
					version.Info
				}{1, info}
				enc := json.NewEncoder(g.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			case "yaml":
				out := struct {
					FormatVersion int `yaml:"format_version"`
					version.Info  `yaml:",inline"`
				}{1, info}
				data, err := yaml.Marshal(out)
				if err != nil {
					return err
				}
				_, err = g.Out.Write(data)
				return err
			}
			return usageError{fmt.Errorf("-o %q: want text, json or yaml", output)}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text, json or yaml")
	return cmd
}
