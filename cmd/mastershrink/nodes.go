package main

import (
	"github.com/spf13/cobra"
)

func newNodesCmd(subcommands ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "Drain workers safely, clean the hosts they leave, and prove the hosts are clean",
		Long: `The final stage of a shrink, for use on its own: 'drain' cordons Nodes and evicts their pods
through the Eviction API (honouring PDBs, guarding unprotected controllers with temporary
ones), 'cleanup' removes what Kubernetes left on a host over SSH and verifies it, 'verify'
only checks.`,
	}
	cmd.AddCommand(subcommands...)
	return cmd
}
