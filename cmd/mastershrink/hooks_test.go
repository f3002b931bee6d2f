package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/runner"
)

// The tests here go through each command's test hook (runF): cobra parses the flags, the
// command validates its options, and the hook gets them instead of a cluster.

// commandOf builds one command with its hook; a subcommand comes with its parent (under).
type commandOf[O any] func(g *globalOptions, runF func(O) error) *cobra.Command

// under puts a subcommand in its parent group (nodes, certs, inventory), which may add to its
// flag handling.
func under[O any](parent func(...*cobra.Command) *cobra.Command, sub commandOf[O]) commandOf[O] {
	return func(g *globalOptions, runF func(O) error) *cobra.Command { return parent(sub(g, runF)) }
}

// parse runs args through a root that holds only the command build makes, and returns the
// options its hook received, or the error that kept the hook from running.
func parse[O any](t *testing.T, s streams, build commandOf[O], args ...string) (O, error) {
	t.Helper()
	var got O
	ran := false
	g := &globalOptions{streams: s, Getenv: func(string) string { return "" }}
	root := newRootCmdOf(g, build(g, func(o O) error { got, ran = o, true; return nil }))
	root.SetArgs(args)
	err := root.Execute()
	switch {
	case err == nil && !ran:
		t.Fatalf("%q: no error, and the hook did not run", args)
	case err != nil && ran:
		t.Fatalf("%q: the hook ran, then %v", args, err)
	}
	return got, err
}

// noTerminal are the streams of a run from a script: nobody to answer a prompt.
var noTerminal = streams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard}

// flagCase is one command line: either the options it gives (check), or the usage error
// that names what is wrong (bad, in the message).
type flagCase[O any] struct {
	args  []string
	check func(t *testing.T, o O)
	bad   string
}

func testFlags[O any](t *testing.T, s streams, build commandOf[O], cases []flagCase[O]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o, err := parse(t, s, build, tc.args...)
			if tc.bad != "" {
				if exitCode(err) != exitUsage || !strings.Contains(err.Error(), tc.bad) {
					t.Fatalf("err %v (exit %d), want a usage error naming %q", err, exitCode(err), tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}

// want fails the test when a parsed value is not the one the flags asked for.
func want[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func wantList(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func wantTarget(t *testing.T, got, want plan.Target) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("target = %+v, want %+v", got, want)
	}
}

func TestPlanFlags(t *testing.T) {
	testFlags(t, noTerminal, newPlanCmd, []flagCase[*planOptions]{
		{args: []string{"plan", "-i", "inv.yaml", "--remove", "m2,m3", "--drain", "w4", "--offline", "m3", "--lb-mode", "remove",
			"--wipe-leaving", "move", "--out", "p.json", "-o", "json", "--detailed-exitcode", "-v=4", "--kubeconfig", "k", "--context", "c"},
			check: func(t *testing.T, o *planOptions) {
				want(t, "inventory", o.Inventory, "inv.yaml")
				wantTarget(t, o.target(), plan.Target{Remove: []string{"m2", "m3"}, Drain: []string{"w4"}, Offline: []string{"m3"}, LBMode: "remove", WipeLeaving: "move"})
				want(t, "out", o.Out, "p.json")
				want(t, "output", o.Output, "json")
				want(t, "detailed exit code", o.DetailedExitCode, true)
				want(t, "verbosity", o.Verbosity, 4)
				want(t, "verbose", o.Verbose, true)
				want(t, "kubeconfig", o.observeOptions().Kubeconfig, "k")
				want(t, "context", o.observeOptions().Context, "c")
			}},
		{args: []string{"plan", "-i", "inv.yaml", "--drain", "w4"}, check: func(t *testing.T, o *planOptions) {
			want(t, "lb mode", o.LBMode, "down")
			want(t, "wipe", o.WipeLeaving, "")
			want(t, "output", o.Output, "table")
			want(t, "detailed exit code", o.DetailedExitCode, false)
			want(t, "verbose", o.Verbose, false)
		}},
		{args: []string{"plan", "--remove", "m2"}, bad: "-i inventory.yaml"},
		{args: []string{"plan", "-i", "inv.yaml"}, bad: "nothing to plan"},
		{args: []string{"plan", "-i", "inv.yaml", "--remove", "m2", "-o", "xml"}, bad: "want table, json or yaml"},
		{args: []string{"plan", "-i", "inv.yaml", "--remove", "m2", "-out", "p.json"}, bad: "--out FILE (two dashes)"},
		{args: []string{"plan", "-i", "inv.yaml", "--remove", "m2", "--lb-mode", "drop"}, bad: `--lb-mode "drop": want down or remove`},
		{args: []string{"plan", "-i", "inv.yaml", "--remove", "m2", "--wipe-leaving", "yes"}, bad: `--wipe-leaving "yes": want move or remove`},
		{args: []string{"plan", "-i", "inv.yaml", "m2"}, bad: "usage: mastershrink plan"},
	})
}

func TestApplyFlags(t *testing.T) {
	testFlags(t, noTerminal, newApplyCmd, []flagCase[*applyOptions]{
		{args: []string{"apply", "plan.json", "-i", "inv.yaml", "--only", "preflight,etcd", "--skip", "nodes/cleanup", "-y",
			"--snapshot-max-age", "10m", "--lb-concurrency", "4"},
			check: func(t *testing.T, o *applyOptions) {
				want(t, "plan", o.PlanPath, "plan.json")
				wantList(t, "only", o.Only, "preflight", "etcd")
				wantList(t, "skip", o.Skip, "nodes/cleanup")
				want(t, "yes", o.Yes, true)
				want(t, "snapshot max age", o.SnapshotMaxAge, 10*time.Minute)
				want(t, "lb concurrency", o.LBConcurrency, 4)
			}},
		{args: []string{"apply", "-i", "inv.yaml", "--remove", "m2", "--drain", "w4", "--offline", "m2", "--lb-mode", "remove", "--wipe-leaving", "remove", "--out", "x.json"},
			check: func(t *testing.T, o *applyOptions) {
				want(t, "plan", o.PlanPath, "")
				wantTarget(t, o.target(), plan.Target{Remove: []string{"m2"}, Drain: []string{"w4"}, Offline: []string{"m2"}, LBMode: "remove", WipeLeaving: "remove"})
				want(t, "plan out", o.PlanOut, "x.json")
				want(t, "yes", o.Yes, false)
				want(t, "snapshot max age", o.SnapshotMaxAge, runner.DefaultSnapshotMaxAge)
				want(t, "lb concurrency", o.LBConcurrency, runner.DefaultLBConcurrency)
			}},
		{args: []string{"apply", "plan.json"}, bad: "-i inventory.yaml"},
		{args: []string{"apply", "-i", "inv.yaml"}, bad: "nothing to apply"},
		{args: []string{"apply", "plan.json", "-i", "inv.yaml", "--remove", "m2"}, bad: "a plan file already says what to remove"},
		{args: []string{"apply", "plan.json", "-i", "inv.yaml", "--wipe-leaving", "move"}, bad: "a plan file already says what to remove"},
		{args: []string{"apply", "plan.json", "-i", "inv.yaml", "--lb-concurrency", "0"}, bad: "--lb-concurrency 0: want 1 or more"},
		{args: []string{"apply", "plan.json", "-i", "inv.yaml", "--snapshot-max-age", "0s"}, bad: "--snapshot-max-age 0s: want a positive duration"},
		{args: []string{"apply", "plan.json", "-i", "inv.yaml", "--snapshot-max-age", "soon"}, bad: "a duration such as 90s"},
		{args: []string{"apply", "-i", "inv.yaml", "--remove", "m2", "--lb-mode", "drop"}, bad: `--lb-mode "drop"`},
		// A misspelt mode is named before the cluster is observed, as plan names it.
		{args: []string{"apply", "-i", "inv.yaml", "--remove", "m2", "--wipe-leaving", "mvoe"}, bad: `--wipe-leaving "mvoe": want move or remove`},
		{args: []string{"apply", "a.json", "b.json", "-i", "inv.yaml"}, bad: "accepts at most 1 arg"},
	})
}

func TestUndoFlags(t *testing.T) {
	build := commandOf[*undoOptions](newUndoCmd)
	testFlags(t, noTerminal, build, []flagCase[*undoOptions]{
		{args: []string{"undo", "plan.json", "-i", "inv.yaml", "--dry-run"}, check: func(t *testing.T, o *undoOptions) {
			want(t, "plan", o.PlanPath, "plan.json")
			want(t, "dry run", o.DryRun, true)
			want(t, "yes", o.Yes, false)
		}},
		{args: []string{"undo", "plan.json", "-i", "inv.yaml", "-y"}, check: func(t *testing.T, o *undoOptions) {
			want(t, "yes", o.Yes, true)
			want(t, "dry run", o.DryRun, false)
		}},
		{args: []string{"undo", "plan.json", "-i", "inv.yaml"}, bad: "not on a terminal, so there is no one to confirm"},
		{args: []string{"undo", "plan.json", "--dry-run"}, bad: "-i inventory.yaml"},
		{args: []string{"undo", "-i", "inv.yaml", "--dry-run"}, bad: "accepts 1 arg(s), received 0"},
	})
	// On a terminal, the prompt is the consent.
	tty := noTerminal
	tty.InIsTerminal = true
	testFlags(t, tty, build, []flagCase[*undoOptions]{
		{args: []string{"undo", "plan.json", "-i", "inv.yaml"}, check: func(t *testing.T, o *undoOptions) {
			want(t, "yes", o.Yes, false)
			want(t, "in is terminal", o.InIsTerminal, true)
		}},
	})
}

func TestStatusFlags(t *testing.T) {
	testFlags(t, noTerminal, newStatusCmd, []flagCase[*statusOptions]{
		{args: []string{"status", "-i", "inv.yaml", "-o", "yaml"}, check: func(t *testing.T, o *statusOptions) {
			want(t, "inventory", o.Inventory, "inv.yaml")
			want(t, "output", o.Output, "yaml")
		}},
		{args: []string{"status", "-i", "inv.yaml"}, check: func(t *testing.T, o *statusOptions) { want(t, "output", o.Output, "table") }},
		{args: []string{"status"}, bad: "-i inventory.yaml"},
		{args: []string{"status", "-i", "inv.yaml", "-o", "wide"}, bad: "want table, json or yaml"},
		{args: []string{"status", "-i", "inv.yaml", "m1"}, bad: "usage: mastershrink status"},
	})
}

func TestCertsInspectFlags(t *testing.T) {
	testFlags(t, noTerminal, under(newCertsCmd, newCertsInspectCmd), []flagCase[*certsInspectOptions]{
		{args: []string{"certs", "inspect", "a.pem", "m1:/etc/kubernetes/ssl", "--ca", "ca.pem", "--fail-within", "30d", "--warn-days", "10", "-o", "wide"},
			check: func(t *testing.T, o *certsInspectOptions) {
				wantList(t, "files", o.Files, "a.pem", "m1:/etc/kubernetes/ssl")
				want(t, "ca", o.CA, "ca.pem")
				want(t, "fail within", o.FailWithin, "30d")
				want(t, "window", o.window, 30*24*time.Hour)
				want(t, "warn days", o.WarnDays, 10)
				want(t, "output", o.Output, "wide")
			}},
		{args: []string{"certs", "inspect", "a.pem"}, check: func(t *testing.T, o *certsInspectOptions) {
			want(t, "output", o.Output, "table")
			want(t, "warn days", o.WarnDays, 30)
			want(t, "window", o.window, 0)
		}},
		{args: []string{"certs", "inspect", "a.pem", "--fail-within", "720h"}, check: func(t *testing.T, o *certsInspectOptions) {
			want(t, "window", o.window, 720*time.Hour)
		}},
		{args: []string{"certs", "inspect", "a.pem", "-o", "pem"}, bad: "want table, wide, json, yaml or csr"},
		{args: []string{"certs", "inspect", "a.pem", "--warn-days", "-1"}, bad: "--warn-days -1: want 0 or more"},
		{args: []string{"certs", "inspect", "a.pem", "--fail-within", "soon"}, bad: "--fail-within"},
		{args: []string{"certs", "inspect"}, bad: "requires at least 1 arg"},
		// The certs group's own flag errors: a pasted PEM is not echoed.
		{args: []string{"certs", "inspect", "-----BEGIN PRIVATE KEY-----\nc2VjcmV0"}, bad: "(not shown)"},
	})
}

func TestCertsRegenFlags(t *testing.T) {
	testFlags(t, noTerminal, under(newCertsCmd, newCertsRegenCmd), []flagCase[*certsRegenOptions]{
		{args: []string{"certs", "regen", "etcd.pem", "--ca", "ca.pem", "--ca-key", "ca-key.pem", "--ca-config", "ca-config.json",
			"--profile", "kubernetes", "--remove", "10.0.0.2,10.0.0.3", "--add", "m9.example,10.0.0.9", "--reuse-key", "etcd-key.pem",
			"--out-dir", "new", "--force", "--allow-shorter-validity"},
			check: func(t *testing.T, o *certsRegenOptions) {
				want(t, "cert", o.Cert, "etcd.pem")
				want(t, "ca", o.CA, "ca.pem")
				want(t, "ca key", o.CAKey, "ca-key.pem")
				want(t, "ca config", o.CAConfig, "ca-config.json")
				want(t, "profile", o.Profile, "kubernetes")
				wantList(t, "remove", o.Remove, "10.0.0.2", "10.0.0.3")
				wantList(t, "add", o.Add, "m9.example", "10.0.0.9")
				want(t, "reuse key", o.ReuseKey, "etcd-key.pem")
				want(t, "out dir", o.OutDir, "new")
				want(t, "force", o.Force, true)
				want(t, "allow shorter", o.AllowShorter, true)
			}},
		{args: []string{"certs", "regen", "etcd.pem", "--ca", "ca.pem", "--ca-key", "ca-key.pem"}, check: func(t *testing.T, o *certsRegenOptions) {
			want(t, "out dir", o.OutDir, ".")
			want(t, "force", o.Force, false)
			want(t, "allow shorter", o.AllowShorter, false)
		}},
		{args: []string{"certs", "regen", "etcd.pem", "--ca", "ca.pem"}, bad: "--ca ca.pem --ca-key ca-key.pem"},
		{args: []string{"certs", "regen", "etcd.pem", "--ca", "ca.pem", "--ca-key", "ca-key.pem", "--add", "not a host"}, bad: "--add:"},
		{args: []string{"certs", "regen", "etcd.pem", "--ca", "ca.pem", "--ca-key", "-----BEGIN EC PRIVATE KEY-----"}, bad: "holds a PEM block (not shown)"},
		{args: []string{"certs", "regen", "a.pem", "b.pem", "--ca", "ca.pem", "--ca-key", "k.pem"}, bad: "accepts 1 arg(s), received 2"},
	})
}

func TestNodesDrainFlags(t *testing.T) {
	testFlags(t, noTerminal, under(newNodesCmd, newNodesDrainCmd), []flagCase[*nodesDrainOptions]{
		{args: []string{"nodes", "drain", "w1", "w2", "-i", "inv.yaml", "--timeout", "10m", "--global-timeout", "1h", "--grace-period", "0",
			"--delete-emptydir-data", "--force", "--ignore-daemonsets=false", "--allow-single-replica", "--pdb-max-unavailable", "1",
			"--delete-pods-of-down-node", "--delete-node", "-o", "json"},
			check: func(t *testing.T, o *nodesDrainOptions) {
				wantList(t, "nodes", o.Nodes, "w1", "w2")
				want(t, "delete node", o.DeleteNode, true)
				want(t, "output", o.Output, "json")
				d := o.drainOptions()
				want(t, "timeout", d.Timeout, 10*time.Minute)
				want(t, "global timeout", d.GlobalTimeout, time.Hour)
				want(t, "grace period (kubectl's 0 is 1 second)", d.GracePeriodSeconds, 1)
				want(t, "delete emptyDir data", d.DeleteEmptyDirData, true)
				want(t, "force", d.Force, true)
				want(t, "ignore DaemonSets", d.IgnoreDaemonSets, false)
				want(t, "allow single replica", d.AllowSingleReplica, true)
				want(t, "PDB max unavailable", d.PDBMaxUnavailable, "1")
				want(t, "delete pods of down node", d.DeletePodsOfDownNode, true)
			}},
		{args: []string{"nodes", "drain", "w1", "-i", "inv.yaml"}, check: func(t *testing.T, o *nodesDrainOptions) {
			d := o.drainOptions()
			want(t, "timeout", d.Timeout, 5*time.Minute)
			want(t, "global timeout", d.GlobalTimeout, 30*time.Minute)
			want(t, "grace period", d.GracePeriodSeconds, -1)
			want(t, "ignore DaemonSets", d.IgnoreDaemonSets, true)
			want(t, "force", d.Force, false)
			want(t, "PDB max unavailable", d.PDBMaxUnavailable, "25%")
			want(t, "delete node", o.DeleteNode, false)
			want(t, "output", o.Output, "table")
		}},
		{args: []string{"nodes", "drain", "w1", "-i", "inv.yaml", "--grace-period", "30", "--pdb-max-unavailable", "100%"},
			check: func(t *testing.T, o *nodesDrainOptions) {
				want(t, "grace period", o.drainOptions().GracePeriodSeconds, 30)
				want(t, "PDB max unavailable", o.drainOptions().PDBMaxUnavailable, "100%")
			}},
		{args: []string{"nodes", "drain", "w1"}, bad: "-i inventory.yaml"},
		{args: []string{"nodes", "drain", "-i", "inv.yaml"}, bad: "requires at least 1 arg"},
		{args: []string{"nodes", "drain", "w1", "-i", "inv.yaml", "-o", "yaml"}, bad: "want table or json"},
		{args: []string{"nodes", "drain", "w1", "-i", "inv.yaml", "--grace-period", "-2"}, bad: "--grace-period -2"},
		{args: []string{"nodes", "drain", "w1", "-i", "inv.yaml", "--pdb-max-unavailable", "0"}, bad: "above 0"},
		{args: []string{"nodes", "drain", "w1", "-i", "inv.yaml", "--pdb-max-unavailable", "150%"}, bad: "percentage"},
		{args: []string{"nodes", "drain", "w1", "-i", "inv.yaml", "--pdb-max-unavailable", "half"}, bad: "--pdb-max-unavailable \"half\""},
		{args: []string{"nodes", "drain", "w1", "-i", "inv.yaml", "--global-timeout", "-1m"}, bad: "--global-timeout"},
	})
}

func TestNodesCleanupFlags(t *testing.T) {
	testFlags(t, noTerminal, under(newNodesCmd, newNodesCleanupCmd), []flagCase[*nodesCleanupOptions]{
		{args: []string{"nodes", "cleanup", "w1", "w2", "-i", "inv.yaml", "--force", "-o", "json"}, check: func(t *testing.T, o *nodesCleanupOptions) {
			wantList(t, "hosts", o.Hosts, "w1", "w2")
			want(t, "force", o.Force, true)
			want(t, "output", o.Output, "json")
			want(t, "verify only", o.verifyOnly, false)
		}},
		{args: []string{"nodes", "cleanup", "w1", "-i", "inv.yaml"}, check: func(t *testing.T, o *nodesCleanupOptions) {
			want(t, "force", o.Force, false)
			want(t, "output", o.Output, "table")
		}},
		{args: []string{"nodes", "cleanup", "w1"}, bad: "-i inventory.yaml"},
		{args: []string{"nodes", "cleanup", "-i", "inv.yaml"}, bad: "requires at least 1 arg"},
		{args: []string{"nodes", "cleanup", "w1", "-i", "inv.yaml", "-o", "yaml"}, bad: "want table or json"},
	})
	testFlags(t, noTerminal, under(newNodesCmd, newNodesVerifyCmd), []flagCase[*nodesCleanupOptions]{
		{args: []string{"nodes", "verify", "w1", "-i", "inv.yaml", "-o", "json"}, check: func(t *testing.T, o *nodesCleanupOptions) {
			wantList(t, "hosts", o.Hosts, "w1")
			want(t, "verify only", o.verifyOnly, true)
			want(t, "output", o.Output, "json")
		}},
		// verify changes nothing, so it has nothing to force.
		{args: []string{"nodes", "verify", "w1", "-i", "inv.yaml", "--force"}, bad: "unknown flag: --force"},
	})
}

func TestInventoryFlags(t *testing.T) {
	testFlags(t, noTerminal, under(newInventoryCmd, newInventoryValidateCmd), []flagCase[*inventoryValidateOptions]{
		{args: []string{"inventory", "validate", "inv.yaml", "--remove", "m2,m3", "--drain", "w4", "--offline", "m3"},
			check: func(t *testing.T, o *inventoryValidateOptions) {
				want(t, "inventory", o.Inventory, "inv.yaml")
				wantList(t, "remove", o.Remove, "m2", "m3")
				wantList(t, "drain", o.Drain, "w4")
				wantList(t, "offline", o.Offline, "m3")
			}},
		{args: []string{"inventory", "validate", "-i", "inv.yaml"}, check: func(t *testing.T, o *inventoryValidateOptions) {
			want(t, "inventory", o.Inventory, "inv.yaml")
		}},
		{args: []string{"inventory", "validate", "-i", "inv.yaml", "inv.yaml"}, check: func(t *testing.T, o *inventoryValidateOptions) {
			want(t, "inventory", o.Inventory, "inv.yaml")
		}},
		{args: []string{"inventory", "validate", "-i", "a.yaml", "b.yaml"}, bad: "two inventories (-i a.yaml and b.yaml)"},
		{args: []string{"inventory", "validate"}, bad: "-i inventory.yaml"},
	})
	testFlags(t, noTerminal, under(newInventoryCmd, newInventoryShowCmd), []flagCase[*inventoryShowOptions]{
		{args: []string{"inventory", "show", "inv.yaml", "-o", "yaml"}, check: func(t *testing.T, o *inventoryShowOptions) {
			want(t, "inventory", o.Inventory, "inv.yaml")
			want(t, "output", o.Output, "yaml")
		}},
		{args: []string{"inventory", "show", "-i", "inv.yaml"}, check: func(t *testing.T, o *inventoryShowOptions) { want(t, "output", o.Output, "table") }},
		{args: []string{"inventory", "show", "inv.yaml", "-o", "xml"}, bad: "want table, json or yaml"},
		{args: []string{"inventory", "show"}, bad: "-i inventory.yaml"},
	})
	testFlags(t, noTerminal, under(newInventoryCmd, newImportCmd), []flagCase[*importOptions]{
		{args: []string{"inventory", "import", "kubeasz", "/etc/kubeasz/clusters/k8s-01/hosts"}, check: func(t *testing.T, o *importOptions) {
			want(t, "hosts file", o.HostsFile, "/etc/kubeasz/clusters/k8s-01/hosts")
		}},
		{args: []string{"inventory", "import", "ansible", "hosts"}, bad: `no import from "ansible"`},
		{args: []string{"inventory", "import", "kubeasz"}, bad: "1 arguments; want: mastershrink inventory import kubeasz HOSTS_FILE"},
	})
}

func TestVersionAndManFlags(t *testing.T) {
	testFlags(t, noTerminal, newVersionCmd, []flagCase[*versionOptions]{
		{args: []string{"version", "-o", "yaml"}, check: func(t *testing.T, o *versionOptions) { want(t, "output", o.Output, "yaml") }},
		{args: []string{"version"}, check: func(t *testing.T, o *versionOptions) { want(t, "output", o.Output, "text") }},
		{args: []string{"version", "-o", "table"}, bad: "want text, json or yaml"},
	})
	file := filepath.Join(t.TempDir(), "pages")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	testFlags(t, noTerminal, newManCmd, []flagCase[*manOptions]{
		{args: []string{"man", "bin/man"}, check: func(t *testing.T, o *manOptions) { want(t, "dir", o.Dir, "bin/man") }},
		{args: []string{"man", file}, bad: "is a file: give the folder"},
		{args: []string{"man"}, bad: "accepts 1 arg(s), received 0"},
	})
}
