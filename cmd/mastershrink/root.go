package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// streams are the command's standard streams, replaced in tests.
type streams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// IsTerminal says whether Out is a terminal (colors, prompts, progress redraws).
	IsTerminal bool
}

func defaultStreams() streams {
	return streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr, IsTerminal: term.IsTerminal(int(os.Stdout.Fd()))}
}

// globalOptions are the flags every command shares.
type globalOptions struct {
	streams
	Inventory string
	Verbose   bool
	Logger    *slog.Logger
	// Dial is the tests' hook for reaching hosts (the lab's network namespace); nil dials
	// directly.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func newRootCmd(s streams) *cobra.Command { return newRootCmdWithDial(s, nil) }

// newRootCmdWithDial is newRootCmd with the tests' dial hook.
func newRootCmdWithDial(s streams, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *cobra.Command {
	g := &globalOptions{streams: s, Dial: dial}
	cmd := &cobra.Command{
		Use:   "mastershrink",
		Short: "Plan and apply the safe shrink of a binary-deployed Kubernetes control plane",
		Long: `mastershrink retires control-plane nodes of a Kubernetes cluster deployed from binaries
(etcd and the kube components as systemd units, cfssl certificates, an nginx stream proxy on
every node). 'plan' observes the cluster and writes a reviewable plan; 'apply' runs it.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			level := slog.LevelError + 1 // off unless -v
			if g.Verbose {
				level = slog.LevelDebug
			}
			g.Logger = slog.New(slog.NewTextHandler(g.ErrOut, &slog.HandlerOptions{Level: level}))
		},
	}
	cmd.SetOut(s.Out)
	cmd.SetErr(s.ErrOut)
	cmd.SetIn(s.In)
	cmd.PersistentFlags().StringVarP(&g.Inventory, "inventory", "i", "", "the cluster inventory file (YAML)")
	cmd.PersistentFlags().BoolVarP(&g.Verbose, "verbose", "v", false, "log what is done to stderr")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })

	cmd.AddCommand(newVersionCmd(g))
	for _, add := range subcommands {
		cmd.AddCommand(add(g))
	}
	return cmd
}

// subcommands are registered by each command's file in init, so files for separate
// commands can be added without touching this one.
var subcommands []func(*globalOptions) *cobra.Command
