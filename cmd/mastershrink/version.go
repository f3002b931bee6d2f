package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/mastershrink/mastershrink/internal/version"
)

type versionOptions struct {
	*globalOptions
	Output string
}

func (o *versionOptions) validate() error {
	if o.Output != "text" && o.Output != "json" && o.Output != "yaml" {
		return usageError{fmt.Errorf("-o %q: want text, json or yaml", o.Output)}
	}
	return nil
}

func newVersionCmd(g *globalOptions, runF func(*versionOptions) error) *cobra.Command {
	o := &versionOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "version [-o text|json|yaml]",
		Short: "Print the version of mastershrink",
		Long: `version prints the release (or the module pseudo-version of a plain go build), the commit,
and with -o json or yaml also whether the tree was modified, the commit time, the Go version
and the platform. Plans record the version line: apply refuses a plan from another version.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runOrHook(cmd.Context(), o, runF, runVersion) },
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "text", "text, json or yaml")
	return cmd
}

func runVersion(_ context.Context, o *versionOptions) error {
	info := version.Get()
	switch o.Output {
	case "json":
		out := struct {
			FormatVersion int `json:"format_version"`
			version.Info
		}{1, info}
		enc := json.NewEncoder(o.Out)
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
		_, err = o.Out.Write(data)
		return err
	}
	_, err := fmt.Fprintln(o.Out, "mastershrink", info.String())
	return err
}
