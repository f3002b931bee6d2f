package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/mastershrink/mastershrink/internal/editdist"
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
		return usageError{explainKubeconfig(err)}
	}
	return nil
}

// explainKubeconfig adds the way out to a kubeconfig that cannot be used, and replaces
// client-go's advice for an empty one (KUBERNETES_MASTER, which mastershrink never reads).
func explainKubeconfig(err error) error {
	const fix = "give the cluster's admin kubeconfig (--kubeconfig FILE, KUBECONFIG, or kubeconfig: in the inventory)"
	msg := err.Error()
	for e := err; e != nil; e = errors.Unwrap(e) {
		if clientcmd.IsEmptyConfig(e) {
			msg = strings.Replace(msg, "invalid configuration: no configuration has been provided, try setting KUBERNETES_MASTER environment variable",
				"no cluster, context or user in it (empty, or not a kubeconfig)", 1)
			return wrappedError{msg: msg + ": " + fix, err: err}
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return wrappedError{msg: msg + ": " + fix, err: err}
	case errors.Is(err, syscall.EISDIR) || strings.HasSuffix(msg, "is a directory"):
		return wrappedError{msg: msg + ": give the kubeconfig file, not its folder", err: err}
	}
	return err
}

// wrappedError is err with another message, for errors.Is and errors.As.
type wrappedError struct {
	msg string
	err error
}

func (e wrappedError) Error() string { return e.msg }
func (e wrappedError) Unwrap() error { return e.err }

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
	if output == "ut" {
		return usageError{errOut}
	}
	want := formats[len(formats)-1]
	if len(formats) > 1 {
		want = strings.Join(formats[:len(formats)-1], ", ") + " or " + want
	}
	return usageError{fmt.Errorf("-o %q: want %s", output, want)}
}

// errOut is terraform's -out FILE, which pflag reads as -o ut.
var errOut = errors.New(`-out: -o is the output format, and -out reads as -o "ut"; write the plan file with --out FILE (two dashes)`)

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
	return newRootCmdOf(g, commands(g)...)
}

// commands are every command, each with its real run function (a nil hook): the list is
// here, in one place, rather than in each file's init.
func commands(g *globalOptions) []*cobra.Command {
	return []*cobra.Command{
		newVersionCmd(g, nil),
		newPlanCmd(g, nil), newApplyCmd(g, nil), newUndoCmd(g, nil), newStatusCmd(g, nil),
		newInventoryCmd(newInventoryValidateCmd(g, nil), newInventoryShowCmd(g, nil), newImportCmd(g, nil)),
		newNodesCmd(newNodesDrainCmd(g, nil), newNodesCleanupCmd(g, nil), newNodesVerifyCmd(g, nil)),
		newCertsCmd(newCertsInspectCmd(g, nil), newCertsRegenCmd(g, nil)),
		newManCmd(g, nil),
	}
}

// runOrHook is every command's RunE after its arguments are in its options: it validates
// them, then runs the command, or hands the options to the tests' hook instead (GitHub CLI's
// runF), so flag parsing and validation are tested without a cluster.
func runOrHook[O interface{ validate() error }](ctx context.Context, o O, runF func(O) error, run func(context.Context, O) error) error {
	if err := o.validate(); err != nil {
		return err
	}
	if runF != nil {
		return runF(o)
	}
	return run(ctx, o)
}

// newRootCmdOf is the root command over g, with the global flags and these subcommands.
func newRootCmdOf(g *globalOptions, subcommands ...*cobra.Command) *cobra.Command {
	s := g.streams
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
	cmd.SetFlagErrorFunc(flagError)

	cmd.AddCommand(subcommands...)
	cmd.InitDefaultCompletionCmd()
	// A command of commands (the root, certs, nodes, completion) runs, only to print its
	// help, so that an unknown subcommand reaches Args and is named with the ones there are
	// (cobra's own message names none, or exits 0 with the help).
	withSubcommandArgs(cmd)
	withUsageInArgErrors(cmd)
	return cmd
}

// flagError is a usage error for a flag pflag could not parse, with the way out: the flag's
// own help for a bad or missing value, the nearest flag for an unknown one.
func flagError(c *cobra.Command, err error) error {
	msg := err.Error()
	var name string
	switch {
	case strings.HasPrefix(msg, "unknown flag: --"):
		unknown := strings.TrimPrefix(msg, "unknown flag: --")
		if near := nearestFlag(c, unknown); near != "" {
			return usageError{fmt.Errorf("%w: did you mean --%s? (%s --help lists the flags)", err, near, c.CommandPath())}
		}
		return usageError{fmt.Errorf("%w (%s --help lists the flags)", err, c.CommandPath())}
	case strings.HasPrefix(msg, "unknown shorthand flag"):
		return usageError{fmt.Errorf("%w (%s --help lists the flags)", err, c.CommandPath())}
	case strings.HasPrefix(msg, "flag needs an argument: '"):
		// A shorthand: "flag needs an argument: 'i' in -i".
		if f := c.Flags().ShorthandLookup(strings.TrimPrefix(msg, "flag needs an argument: ")[1:2]); f != nil {
			name = f.Name
		}
	case strings.HasPrefix(msg, "flag needs an argument: "):
		name = strings.TrimLeft(strings.TrimPrefix(msg, "flag needs an argument: "), "-")
		if i := strings.IndexAny(name, " "); i >= 0 {
			name = name[:i]
		}
	case strings.HasPrefix(msg, "invalid argument "):
		if i := strings.Index(msg, ` for "`); i >= 0 {
			rest := msg[i+len(` for "`):]
			if j := strings.Index(rest, `"`); j >= 0 {
				name = rest[:j]
				if k := strings.LastIndex(name, "--"); k >= 0 {
					name = name[k+2:]
				}
			}
		}
	}
	if f := c.Flags().Lookup(name); f != nil && name != "" {
		varname, usage := pflag.UnquoteUsage(f)
		if f.Value.Type() == "bool" {
			varname = "=true|false"
		} else {
			varname = " " + varname
		}
		want := fmt.Sprintf("--%s%s: %s", f.Name, varname, usage)
		if f.Value.Type() == "duration" {
			want += "; a duration such as 90s, 10m or 1h30m"
		}
		return usageError{fmt.Errorf("%w (%s)", err, want)}
	}
	return usageError{err}
}

// nearestFlag is the command's flag name closest to a mistyped one, "" when none is close.
func nearestFlag(c *cobra.Command, typed string) string {
	best, bestDist := "", 3
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if d := editdist.Distance(typed, f.Name); d < bestDist && d <= len(f.Name)/3 && !f.Hidden {
			best, bestDist = f.Name, d
		}
	})
	return best
}

// withSubcommandArgs gives every command that has subcommands an Args that names an unknown
// one with the nearest and the list, and a RunE that prints the help when it has none.
func withSubcommandArgs(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		withSubcommandArgs(c)
	}
	if !cmd.HasSubCommands() {
		return
	}
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		var names []string
		near, nearDist := "", 3
		for _, sub := range c.Commands() {
			if !sub.IsAvailableCommand() {
				continue
			}
			names = append(names, sub.Name())
			if d := editdist.Distance(args[0], sub.Name()); d < nearDist && d <= len(sub.Name())/3 {
				near, nearDist = sub.Name(), d
			}
		}
		msg := fmt.Sprintf("unknown command %q for %q", clipArg(args[0]), c.CommandPath())
		if near != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", near)
		}
		if c.Name() == "completion" {
			return usageError{fmt.Errorf("%s: the shells are %s (%s bash)", msg, strings.Join(names, ", "), c.CommandPath())}
		}
		return usageError{fmt.Errorf("%s: the commands are %s (%s --help says what each does)", msg, strings.Join(names, ", "), c.CommandPath())}
	}
	if !cmd.Runnable() {
		cmd.RunE = func(c *cobra.Command, args []string) error { return c.Help() }
	}
}

// withUsageInArgErrors makes every command's argument errors say how the command is used:
// cobra's "accepts 1 arg(s), received 0" names the problem, the usage line the fix.
func withUsageInArgErrors(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		withUsageInArgErrors(c)
	}
	check := cmd.Args
	if check == nil || cmd == cmd.Root() {
		return
	}
	cmd.Args = func(c *cobra.Command, args []string) error {
		err := check(c, args)
		var u usageError
		switch {
		case err == nil || errors.As(err, &u):
			return err
		case flagValue(c, "output") == "ut":
			return usageError{errOut}
		}
		return usageError{fmt.Errorf("%w (usage: %s)", err, c.UseLine())}
	}
}

// flagValue is the value of a command's flag, "" when it has none of that name.
func flagValue(c *cobra.Command, name string) string {
	if f := c.Flags().Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
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
