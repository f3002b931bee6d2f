package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"

	"github.com/mastershrink/mastershrink/internal/version"
	"github.com/mastershrink/mastershrink/observe"
)

// streams are the command's standard streams, replaced in tests. Each stream is a terminal
// or not on its own: `apply 2>log` still has a person at the prompt, `apply </dev/null` has
// none, and progress on a terminal stderr may be coloured while stdout goes to a file.
type streams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// IsTerminal says whether Out is a terminal.
	IsTerminal bool
	// ErrIsTerminal says whether ErrOut, where progress and prompts go, is a terminal.
	ErrIsTerminal bool
	// InIsTerminal says whether In is a terminal: someone can answer a prompt.
	InIsTerminal bool
	// Color says whether progress on ErrOut may be coloured: ErrOut is a terminal and
	// neither NO_COLOR nor TERM=dumb says otherwise.
	Color bool
}

func defaultStreams() streams {
	errTTY := term.IsTerminal(int(os.Stderr.Fd()))
	return streams{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		IsTerminal:    term.IsTerminal(int(os.Stdout.Fd())),
		ErrIsTerminal: errTTY,
		InIsTerminal:  term.IsTerminal(int(os.Stdin.Fd())),
		Color:         colorFor(errTTY, os.Getenv),
	}
}

// colorFor decides colour for a stream: only on a terminal, never with NO_COLOR set to
// anything (no-color.org), nor on a terminal that says it cannot (TERM=dumb).
func colorFor(isTerminal bool, getenv func(string) string) bool {
	return isTerminal && getenv("NO_COLOR") == "" && getenv("TERM") != "dumb"
}

// globalOptions are the flags every command shares.
type globalOptions struct {
	streams
	Inventory string
	// Verbosity is the -v level: 0 logs nothing, 1 to 3 the steps taken (slog Info), 4
	// and up every command, call and request (slog Debug), as kubectl's -v=N reads.
	Verbosity int
	// Verbose is Verbosity > 0, for the commands that only ask whether to say more.
	Verbose bool
	Logger  *slog.Logger
	// Dial is the tests' hook for reaching hosts (the lab's network namespace); nil dials
	// directly.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Kubeconfig and Context are kubectl's --kubeconfig and --context.
	Kubeconfig, Context string
	// Getenv reads the environment (KUBECONFIG); tests replace it.
	Getenv func(string) string
}

// observeOptions are the options every command reaching the cluster opens it with: the
// tests' dial hook and the Kubernetes client conventions. The admin kubeconfig is, as
// kubectl finds its own, --kubeconfig, else KUBECONFIG (a path list), else the inventory's
// kubeconfig, which stands where kubectl has ~/.kube/config.
func (g *globalOptions) observeOptions() observe.Options {
	o := observe.Options{Dial: g.Dial, Kubeconfig: g.Kubeconfig, Context: g.Context}
	if o.Kubeconfig == "" && g.Getenv != nil {
		o.KubeconfigPaths = kubeconfigPaths(g.Getenv("KUBECONFIG"))
	}
	return o
}

// checkKube loads the kubeconfig the operator named (--kubeconfig, KUBECONFIG, --context)
// before any host is dialled: a local read, nothing connects. A wrong path or context is
// then named at once (exit 4), not after a full observation. The inventory's own
// kubeconfig was checked when the inventory loaded.
func (g *globalOptions) checkKube(c *observe.Cluster) error {
	o := g.observeOptions()
	if o.Kubeconfig == "" && len(o.KubeconfigPaths) == 0 && o.Context == "" {
		return nil
	}
	if _, _, err := c.Kube(); err != nil {
		return usageError{err}
	}
	return nil
}

// kubeconfigPaths splits KUBECONFIG as kubectl does: on the OS's list separator, empty
// entries and repeats dropped.
func kubeconfigPaths(env string) []string {
	var out []string
	for _, p := range filepath.SplitList(env) {
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// validOutput checks an -o value against a command's formats, for a usage error that
// lists them.
func validOutput(output string, formats ...string) error {
	if slices.Contains(formats, output) {
		return nil
	}
	want := formats[len(formats)-1]
	if len(formats) > 1 {
		want = strings.Join(formats[:len(formats)-1], ", ") + " or " + want
	}
	return usageError{fmt.Errorf("-o %q: want %s", output, want)}
}

// completeOutput makes shell completion offer a command's -o formats.
func completeOutput(cmd *cobra.Command, formats ...string) {
	_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return formats, cobra.ShellCompDirectiveNoFileComp
	})
}

// writeData prints v as JSON or YAML. YAML is made from the JSON, so both have the same
// keys, and a tool reading one reads the other.
func writeData(w io.Writer, v any, output string) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if output == "yaml" {
		if data, err = yaml.JSONToYAML(data); err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

// logLevel maps -v levels to slog's: off below 1.
func logLevel(verbosity int) slog.Level {
	switch {
	case verbosity <= 0:
		return slog.LevelError + 1
	case verbosity < 4:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

func newRootCmd(s streams) *cobra.Command { return newRootCmdWithDial(s, nil) }

// newRootCmdWithDial is newRootCmd with the tests' dial hook.
func newRootCmdWithDial(s streams, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *cobra.Command {
	g := &globalOptions{streams: s, Dial: dial, Getenv: os.Getenv}
	cmd := &cobra.Command{
		Use:   "mastershrink",
		Short: "Plan and apply the safe shrink of a binary-deployed Kubernetes control plane",
		Long: `mastershrink retires control-plane nodes of a Kubernetes cluster deployed from binaries
(etcd and the kube components as systemd units, cfssl certificates, an nginx stream proxy on
every node). 'plan' observes the cluster and writes a reviewable plan; 'apply' runs it.`,
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			g.Verbose = g.Verbosity > 0
			g.Logger = slog.New(slog.NewTextHandler(g.ErrOut, &slog.HandlerOptions{Level: logLevel(g.Verbosity)}))
			// Packages below cmd log through slog's default logger, so -v reaches them
			// without a logger threaded through every call.
			slog.SetDefault(g.Logger)
			g.Logger.Debug("mastershrink", "version", version.String(), "command", cmd.CommandPath(), "verbosity", g.Verbosity)
		},
	}
	cmd.SetVersionTemplate("mastershrink {{.Version}}\n")
	cmd.SetOut(s.Out)
	cmd.SetErr(s.ErrOut)
	cmd.SetIn(s.In)
	pf := cmd.PersistentFlags()
	pf.StringVarP(&g.Inventory, "inventory", "i", "", "the cluster inventory file (YAML)")
	addVerbosityFlags(pf, &g.Verbosity)
	pf.StringVar(&g.Kubeconfig, "kubeconfig", "", "the admin kubeconfig, instead of KUBECONFIG or the inventory's kubeconfig")
	pf.StringVar(&g.Context, "context", "", "the kubeconfig context to use, instead of its current-context")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })

	cmd.AddCommand(newVersionCmd(g))
	for _, add := range subcommands {
		cmd.AddCommand(add(g))
	}
	for _, c := range cmd.Commands() {
		for _, add := range nestedCommands[c.Name()] {
			c.AddCommand(add(g))
		}
	}
	return cmd
}

// addVerbosityFlags gives -v both readings operators bring: a switch (-v, -vv, --verbose,
// --verbose=true) and kubectl's level (-v=4, --v=4, --verbose=4). Both names share one level.
func addVerbosityFlags(fs *pflag.FlagSet, level *int) {
	val := (*verbosity)(level)
	fs.VarPF(val, "verbose", "v", "log what is done to stderr; at `level` 4 (-v=4 or -vvvv) also each SSH command, etcd call and API request").NoOptDefVal = "+1"
	fs.VarPF(val, "v", "", "the same as --verbose, as kubectl spells it (--v=4)").NoOptDefVal = "+1"
	fs.Lookup("v").Hidden = true
}

// verbosity is a -v level that also takes the switch's forms: a bare -v adds one, and
// true or false turn it on or off.
type verbosity int

func (v *verbosity) Set(s string) error {
	switch s {
	case "+1":
		*v++
	case "true":
		*v = max(*v, 1)
	case "false":
		*v = 0
	default:
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return fmt.Errorf("want a level such as 4 (or true or false), got %q", s)
		}
		*v = verbosity(n)
	}
	return nil
}

func (v *verbosity) String() string { return strconv.Itoa(int(*v)) }

// Type is "count" so the help shows -v alone as the usual form, with no "[=+1]".
func (v *verbosity) Type() string { return "count" }

// subcommands are every top-level command, one file each: the list is here, in one place,
// rather than in each file's init.
var subcommands = []func(*globalOptions) *cobra.Command{
	newPlanCmd, newApplyCmd, newUndoCmd, newStatusCmd, newInventoryCmd, newNodesCmd, newCertsCmd, newManCmd,
}

// nestedCommands are added under the top-level command of that name ("inventory").
var nestedCommands = map[string][]func(*globalOptions) *cobra.Command{
	"inventory": {newImportCmd},
}
