package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mastershrink/mastershrink/inventory"
)

type importOptions struct {
	*globalOptions
	// HostsFile is kubeasz's clusters/NAME/hosts, the one format imported.
	HostsFile string
}

// validate has nothing left to check: Args took the format and the file.
func (o *importOptions) validate() error { return nil }

func newImportCmd(g *globalOptions, runF func(*importOptions) error) *cobra.Command {
	o := &importOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "import kubeasz HOSTS_FILE",
		Short: "Write an inventory.yaml from another tool's inventory (kubeasz's clusters/NAME/hosts)",
		Long: `import reads kubeasz's Ansible inventory (clusters/NAME/hosts on the deploy node) and prints
an inventory.yaml with the kubeasz layout: [etcd], [kube_master] and [kube_node] become the
etcd, master and worker roles, k8s_nodename the host names, ansible_ssh_user, ansible_ssh_port
and ansible_ssh_private_key_file the SSH settings, SECURE_PORT the apiserver port, and the
cluster's kubectl.kubeconfig the kubeconfig. What it cannot know is written as comments at
the top: read them, then run mastershrink inventory validate on the result.`,
		Example: `  mastershrink inventory import kubeasz /etc/kubeasz/clusters/k8s-01/hosts > inventory.yaml
  mastershrink inventory validate -i inventory.yaml`,
		Args: func(cmd *cobra.Command, args []string) error {
			const want = "want: mastershrink inventory import kubeasz HOSTS_FILE"
			switch {
			case len(args) > 0 && args[0] != "kubeasz":
				return usageError{fmt.Errorf("no import from %q: kubeasz is the one format imported; %s", clipArg(args[0]), want)}
			case len(args) != 2:
				return usageError{fmt.Errorf("%d arguments; %s (kubeasz is the one format imported)", len(args), want)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.HostsFile = args[1]
			return runOrHook(cmd.Context(), o, runF, runImport)
		},
	}
	return cmd
}

func runImport(_ context.Context, o *importOptions) error {
	k, err := inventory.ImportKubeasz(o.HostsFile)
	if err != nil {
		return usageError{err}
	}
	if _, err := o.Out.Write(k.YAML()); err != nil {
		return err
	}
	fmt.Fprintf(o.ErrOut, "Imported %d hosts of cluster %q. Check the comments at the top, then: mastershrink inventory validate -i FILE\n", len(k.Hosts), k.Cluster)
	return nil
}
