package runner

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/plan"
)

// UndoEnv is what running an undo needs from the cluster.
type UndoEnv struct {
	Inv *inventory.Inventory
	// Host connects to an inventory host.
	Host func(ctx context.Context, name string) (host.Host, error)
	// Ready asks a master's apiserver for /readyz once; nil means ready.
	Ready func(ctx context.Context, hostName string) error
	// Fence proves the apply lock is still this run's before each action, as apply proves
	// it before each step; nil for none.
	Fence func(ctx context.Context) error
	// ReadyDeadline bounds the wait for an apiserver after its restart (2 minutes if 0).
	ReadyDeadline time.Duration
	Progress      io.Writer
}

// Check proves, before anything changes, that every file still holds what apply wrote and
// every backup what apply replaced; it returns every mismatch at once.
func (u UndoPlan) Check(ctx context.Context, env UndoEnv) error {
	var problems []string
	for _, a := range u.Actions {
		if len(a.Files) == 0 {
			continue
		}
		h, err := env.Host(ctx, a.Host)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", a.Host, err))
			continue
		}
		for _, f := range a.Files {
			cur, err := h.ReadFile(ctx, f.Path)
			switch {
			case err != nil:
				problems = append(problems, fmt.Sprintf("%s:%s: %v", a.Host, f.Path, err))
			case sha(cur) != f.AfterSHA256:
				problems = append(problems, fmt.Sprintf("%s:%s changed since %s wrote it (sha256 %s, apply wrote %s): put it back by hand from %s if you mean to",
					a.Host, f.Path, a.Step, short(sha(cur)), short(f.AfterSHA256), f.Backup))
			}
			old, err := h.ReadFile(ctx, f.Backup)
			switch {
			case err != nil:
				problems = append(problems, fmt.Sprintf("%s:%s (backup of %s): %v", a.Host, f.Backup, f.Path, err))
			case sha(old) != f.BeforeSHA256:
				problems = append(problems, fmt.Sprintf("%s:%s is not the content %s replaced in %s (sha256 %s, want %s)",
					a.Host, f.Backup, a.Step, f.Path, short(sha(old)), short(f.BeforeSHA256)))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w, nothing changed:\n  %s", ErrUndoUnsafe, strings.Join(problems, "\n  "))
	}
	return nil
}

// Run undoes each action in order and stops at the first failure, naming what is done and
// what is left.
func (u UndoPlan) Run(ctx context.Context, env UndoEnv) error {
	if env.Progress == nil {
		env.Progress = io.Discard
	}
	for i, a := range u.Actions {
		fmt.Fprintf(env.Progress, "  [%d/%d] undo %s: %s\n", i+1, len(u.Actions), a.Step, a.Describe())
		err := error(nil)
		if env.Fence != nil {
			err = env.Fence(ctx)
		}
		if err == nil {
			err = undoOne(ctx, env, a)
		}
		if err != nil {
			var left []string
			for _, b := range u.Actions[i:] {
				left = append(left, b.Step)
			}
			return fmt.Errorf("undo %s on %s: %w (not undone: %s)", a.Step, a.Host, err, strings.Join(left, ", "))
		}
	}
	return nil
}

func undoOne(ctx context.Context, env UndoEnv, a UndoAction) error {
	ih, ok := env.Inv.Host(a.Host)
	if !ok {
		return fmt.Errorf("host %s is not in the inventory", a.Host)
	}
	h, err := env.Host(ctx, a.Host)
	if err != nil {
		return err
	}
	if err := restoreFiles(ctx, h, a.Files, env.Progress); err != nil {
		return err
	}
	switch a.Kind {
	case plan.KindLBUpdate:
		// No backups to restore: Undo then only has the proxy test the config and reloads.
		// The proxy is haproxy when the file put back is its config: an undo has no plan
		// facts to ask, and the file it restored is the one the step rewrote.
		var ex lb.Executor
		hapConfig, _, _ := ih.Paths.HAProxyPaths()
		for _, f := range a.Files {
			if f.Path == hapConfig {
				ex.Kind = lb.KindHAProxy
			}
		}
		return ex.Undo(ctx, h, ih.Paths, nil)
	case plan.KindAPIServerRewrite:
		sd, err := h.Systemd(ctx)
		if err != nil {
			return err
		}
		defer sd.Close()
		if err := sd.DaemonReload(ctx); err != nil {
			return fmt.Errorf("daemon-reload: %w", err)
		}
		if err := sd.Restart(ctx, ih.Paths.APIServerUnit); err != nil {
			return fmt.Errorf("restart %s: %w", ih.Paths.APIServerUnit, err)
		}
		return waitReady(ctx, env, a.Host)
	case plan.KindVIPUpdate:
		return undoVIPUpdate(ctx, h, a.Files)
	case plan.KindRetire, plan.KindVIPRelease:
		sd, err := h.Systemd(ctx)
		if err != nil {
			return err
		}
		defer sd.Close()
		for _, unit := range a.Units {
			if err := sd.Enable(ctx, unit); err != nil {
				return fmt.Errorf("enable %s: %w", unit, err)
			}
			if err := sd.Start(ctx, unit); err != nil {
				return fmt.Errorf("start %s: %w", unit, err)
			}
		}
		if slices.Contains(a.Units, ih.Paths.APIServerUnit) {
			return waitReady(ctx, env, a.Host)
		}
	}
	return nil
}

// restoreFiles writes each backup over its file, atomically and with a backup of its own:
// what apply wrote stays on the host, so an undo can be undone by hand.
func restoreFiles(ctx context.Context, h host.Host, files []UndoFile, progress io.Writer) error {
	for _, f := range files {
		data, err := h.ReadFile(ctx, f.Backup)
		if err != nil {
			return fmt.Errorf("read backup %s: %w", f.Backup, err)
		}
		res, err := h.WriteFile(ctx, f.Path, data, host.WriteOptions{Backup: true})
		if err != nil {
			return fmt.Errorf("restore %s: %w", f.Path, err)
		}
		fmt.Fprintf(progress, "        %s restored from %s (what apply wrote is kept in %s)\n", f.Path, f.Backup, res.Backup)
	}
	return nil
}

// waitReady polls a master's /readyz until it answers, so the next action (which may send
// traffic to it) finds it serving.
func waitReady(ctx context.Context, env UndoEnv, hostName string) error {
	if env.Ready == nil {
		return nil
	}
	deadline := env.ReadyDeadline
	if deadline <= 0 {
		deadline = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		err := env.Ready(ctx, hostName)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver on %s not ready within %s: %w (journalctl -u on the host says why)", hostName, deadline, err)
		case <-tick.C:
		}
	}
}
