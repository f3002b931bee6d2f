package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/inventory"
)

// ErrDrift means a file no longer holds the content the change was planned from.
var ErrDrift = errors.New("file changed since it was planned")

// NodeTarget is one node's share of the LB step.
type NodeTarget struct {
	Host  machine.Host
	Paths inventory.Paths
	// Changes are the planned rewrites (from Rewrite); empty for a node already correct.
	Changes []machine.FileChange
	// Listen is the proxy address on the node; empty uses Paths.NginxListen.
	Listen string
	// TLS is used for the probe; nil probes without verification (see Probe).
	TLS *tls.Config
	// Current is what the caller has just read of the changes' files, by path: Apply and
	// Stage do not read them again. Each write still checks, on the node as it replaces the
	// file, that it holds the content it was planned from.
	Current map[string]string
}

// NodeResult says what Apply did on one node.
type NodeResult struct {
	Host string
	// Skipped is true when every file already held its new content and the running nginx was
	// shown to have loaded it: nothing was written or reloaded.
	Skipped bool
	// Backups maps each rewritten file to its backup.
	Backups map[string]string
}

// ReloadMethod says how the Executor has a node's nginx load its new config. Both are
// graceful reloads (SIGHUP to the master): old workers finish their connections.
type ReloadMethod int

const (
	// ReloadSystemd reloads Paths.NginxUnit through the node's systemd (D-Bus, or systemctl
	// where systemd-stdio-bridge is missing), which runs the unit's ExecReload. The default,
	// and the right one wherever a unit runs nginx: systemd keeps track of the reload.
	ReloadSystemd ReloadMethod = iota
	// ReloadSignal sends SIGHUP to the nginx master, as `nginx -s reload` does, for an nginx
	// that no systemd unit runs (started by another supervisor or by hand); the config was
	// tested just before (nginx -t). The master is the PID in the pid file named by the
	// config's top-level pid directive, or nginx's built-in one; with none running, it runs
	// `nginx -p PREFIX -c CONFIG -s reload`, whose error says why.
	ReloadSignal
	// ReloadDetect picks one per node: ReloadSystemd where systemd runs the node (it was
	// booted with it: /run/systemd/system exists, sd_booted's test), else ReloadSignal, since
	// no unit can run nginx on a node without systemd. A node with systemd whose unit is
	// missing is an error, as with ReloadSystemd: a wrong nginx_unit is never guessed around.
	ReloadDetect
)

func (m ReloadMethod) String() string {
	switch m {
	case ReloadSignal:
		return "signal"
	case ReloadDetect:
		return "detect"
	}
	return "systemd"
}

// detectReload is ReloadDetect's choice for a node.
func detectReload(ctx context.Context, h machine.Host) (ReloadMethod, error) {
	_, err := h.Run(ctx, "test -d /run/systemd/system")
	var ce *machine.CmdError
	switch {
	case err == nil:
		return ReloadSystemd, nil
	case errors.As(err, &ce) && ce.ExitCode == 1:
		return ReloadSignal, nil
	}
	return ReloadSystemd, fmt.Errorf("tell whether systemd runs the node: %w", err)
}

// detectReload is detectReload, once per node when the Executor remembers.
func (e *Executor) detectReload(ctx context.Context, h machine.Host) (ReloadMethod, error) {
	if e.memo == nil {
		return detectReload(ctx, h)
	}
	e.memo.mu.Lock()
	defer e.memo.mu.Unlock()
	if !e.memo.known {
		m, err := detectReload(ctx, h)
		if err != nil {
			return m, err
		}
		e.memo.method, e.memo.known = m, true
	}
	return e.memo.method, nil
}

// Executor applies LB changes on nodes. The zero value is ready to use.
type Executor struct {
	// ReloadTimeout bounds the wait for nginx to start workers on the new config (30 s).
	ReloadTimeout time.Duration
	// ProbeTimeout bounds the wait for the apiserver to answer through the proxy (30 s).
	ProbeTimeout time.Duration
	// Reload is how nginx is reloaded; the zero value is ReloadSystemd. haproxy is always
	// reloaded through its unit (Paths.HAProxyPaths).
	Reload ReloadMethod
	// Kind is the node's proxy (NodeConfig.Kind): empty for nginx, KindHAProxy.
	Kind string

	// memo, when set (NewNodeExecutor), keeps what a node's proxy does not change while a
	// run lasts, so each fan-out over a thousand nodes does not ask them again.
	memo *nodeMemo
}

// nodeMemo is what an Executor made for one node learnt of it: how it reloads (ReloadDetect's
// answer) and where nginx writes its pid (read from its config and `nginx -V`). Neither
// depends on the upstream servers the rewrites change.
type nodeMemo struct {
	mu      sync.Mutex
	method  ReloadMethod
	known   bool
	pidFile string
}

// NewNodeExecutor is an Executor for one node's proxy that remembers what it learnt of the
// node between calls (see nodeMemo); use one per node for the whole run.
func NewNodeExecutor(reload ReloadMethod, kind string) *Executor {
	return &Executor{Reload: reload, Kind: kind, memo: &nodeMemo{}}
}

// controller is what the executor needs from whatever runs nginx on a node.
type controller interface {
	// mainPID is nginx's master PID, 0 when it is not running or cannot be told.
	mainPID(ctx context.Context) int
	reload(ctx context.Context) error
	Close() error
}

func (e *Executor) controller(ctx context.Context, h machine.Host, p inventory.Paths) (controller, error) {
	if e.Kind == KindHAProxy {
		return hapController(ctx, h, p)
	}
	method := e.Reload
	if method == ReloadDetect {
		var err error
		if method, err = e.detectReload(ctx, h); err != nil {
			return nil, err
		}
	}
	if method == ReloadSignal {
		return &signalController{h: h, p: p, memo: e.memo}, nil
	}
	sd, err := h.Systemd(ctx)
	if err != nil {
		return nil, fmt.Errorf("systemd: %w", err)
	}
	return &unitController{sd: sd, unit: p.NginxUnit}, nil
}

type unitController struct {
	sd   machine.Systemd
	unit string
}

func (c *unitController) mainPID(ctx context.Context) int {
	st, err := c.sd.Status(ctx, c.unit)
	if err != nil || st.ActiveState != "active" {
		return 0
	}
	return st.MainPID
}

func (c *unitController) reload(ctx context.Context) error {
	if err := c.sd.Reload(ctx, c.unit); err != nil {
		return fmt.Errorf("reload %s: %w", c.unit, err)
	}
	return nil
}

func (c *unitController) Close() error { return c.sd.Close() }

type signalController struct {
	h    machine.Host
	p    inventory.Paths
	memo *nodeMemo // nil: find the pid file each time
	// testFirst has reloadListed run nginx -t first, in the same command: Apply sets it
	// instead of testing in a command of its own.
	testFirst bool
	// written is what Apply just wrote, by path: pidFile finds the pid directive there
	// instead of reading the main config back.
	written map[string]string
	// ran is reloadScript's outcome when Apply ran it in the command of its write; the
	// next reloadListed reads it instead of running the script.
	ran *machine.ThenResult
}

// exitRejected is reloadListed's exit code when nginx -t rejects the config.
const exitRejected = 97

// rejectedError is nginx -t's refusal of the config, with nginx's own lines.
type rejectedError struct{ msg string }

func (e *rejectedError) Error() string { return "nginx -t rejected the config: " + e.msg }

func (c *signalController) mainPID(ctx context.Context) int {
	pidFile, err := c.rememberedPidFile(ctx)
	if err != nil {
		return 0
	}
	b, err := c.h.ReadFile(ctx, pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	// A stale pid file names a process that is gone, or another one: the master's
	// children are then not nginx workers, and the reload wait finds no worker.
	return pid
}

// rememberedPidFile is pidFile, found once per node when the controller has a memo.
func (c *signalController) rememberedPidFile(ctx context.Context) (string, error) {
	if c.memo == nil {
		return c.pidFile(ctx)
	}
	c.memo.mu.Lock()
	defer c.memo.mu.Unlock()
	if c.memo.pidFile == "" {
		f, err := c.pidFile(ctx)
		if err != nil {
			return "", err
		}
		c.memo.pidFile = f
	}
	return c.memo.pidFile, nil
}

// pidFile resolves the pid directive as nginx does: relative to the prefix (-p, else the
// built-in one), and the built-in path when the main file has none.
func (c *signalController) pidFile(ctx context.Context) (string, error) {
	main := MainConfigPath(c.p)
	text, ok := c.written[main]
	if !ok {
		b, err := c.h.ReadFile(ctx, main)
		if err != nil {
			return "", err
		}
		text = string(b)
	}
	stmts, err := parseStmts(main, text)
	if err != nil {
		return "", err
	}
	pid := ""
	for _, s := range stmts {
		if s.name.val == "pid" && !s.hasBlock() && len(s.args) == 1 {
			pid = s.args[0].val
		}
	}
	if pid != "" && path.IsAbs(pid) {
		return pid, nil
	}
	prefix := c.p.NginxPrefix
	var builtin map[string]string
	if prefix == "" || pid == "" {
		res, err := c.h.Run(ctx, nginxBin(c.p)+" -V 2>&1")
		if err != nil {
			return "", err
		}
		builtin = configureArgs(string(res.Stdout))
		if prefix == "" {
			prefix = builtin["prefix"]
		}
	}
	if pid == "" {
		pid = builtin["pid-path"]
		if pid == "" {
			pid = "logs/nginx.pid"
		}
		if path.IsAbs(pid) {
			return pid, nil
		}
	}
	return path.Join(prefix, pid), nil
}

// configureArgs reads the --key=value options of `nginx -V`.
func configureArgs(out string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(out) {
		if k, v, ok := strings.Cut(strings.TrimPrefix(f, "--"), "="); ok && strings.HasPrefix(f, "--") {
			m[k] = strings.Trim(v, `'"`)
		}
	}
	return m
}

// reload is the controller's plain reload; the reload wait uses reloadListed, which sends
// the same signal with the workers listed around it in one command.
func (c *signalController) reload(ctx context.Context) error {
	if _, err := c.h.Run(ctx, nginxCmd(c.p)+" -s reload"); err != nil {
		return fmt.Errorf("nginx -s reload: %w", err)
	}
	return nil
}

// pidScript is shell that sets pid to the master's PID from its pid file, 0 where mainPID
// answers 0 (no pid file, or no number in it).
func (c *signalController) pidScript(ctx context.Context) string {
	f, err := c.rememberedPidFile(ctx)
	if err != nil {
		return "pid=0\n"
	}
	// read, not cat: a builtin, where this runs on every node of every fan-out.
	return "pid=; read -r pid < " + shq(f) + " 2>/dev/null\ncase $pid in ''|*[!0-9]*) pid=0 ;; esac\n"
}

// listedMark separates the parts of reloadListed's output.
const listedMark = "--- mastershrink: reloaded"

// reloadSettleChecks is how many times, 0.1 s apart, reloadListed's command lists the
// workers after the reload before it leaves the rest of the wait to reload's own polling.
const reloadSettleChecks = 20

// reloadListed is mainPID, the workers, the reload, and the workers once the reload has
// settled, in one command: over a fleet that is one SSH round trip per node where it was
// four or more. The master's PID is read from its pid file as mainPID reads it. After the
// signal the command lists the workers every 0.1 s, reloadSettleChecks times at most, until
// reload's own test holds (a worker that was not there before, and none of the old ones but
// those shutting down), so the wait costs the node a sleep, not an SSH session, every 0.1 s.
// before is nil when there is no master to list the workers of.
func (c *signalController) reloadListed(ctx context.Context) (pid int, before, after []worker, err error) {
	var res machine.Result
	if c.ran != nil {
		res, err = c.ran.Result, c.ran.Err
		c.ran = nil
	} else {
		res, err = c.h.Run(ctx, c.reloadScript(ctx))
	}
	return c.parseListed(res, err)
}

// reloadScript is reloadListed's command.
func (c *signalController) reloadScript(ctx context.Context) string {
	// Substituted as $( ( … ) ), with spaces: "$((" would begin arithmetic.
	list := `( ` + nginxWorkersOf(`"$pid"`) + "\n) 2>/dev/null"
	// SIGHUP to the master, as `nginx -s reload` sends it (nginx's documented reload) but
	// without parsing the whole config once more: the caller has just tested it. With no
	// master to signal, `nginx -s reload` says why.
	test := ""
	if c.testFirst {
		test = NginxTestCmd(c.p) + " -q || exit " + strconv.Itoa(exitRejected) + "\n"
	}
	script := test + c.pidScript(ctx) + `echo "$pid"
b=; [ "$pid" -gt 0 ] && b=$( ` + list + ` )
[ -z "$b" ] || printf '%s\n' "$b"
echo '` + listedMark + `'
if [ "$pid" -gt 0 ]; then kill -HUP "$pid" || exit; else ` + nginxCmd(c.p) + ` -s reload || exit; exit 0; fi
old=' '
while read -r p _; do old="$old$p "; done <<MASTERSHRINK_EOF
$b
MASTERSHRINK_EOF
i=0; a=
while [ $i -lt ` + strconv.Itoa(reloadSettleChecks) + ` ]; do
sleep 0.1; i=$((i+1))
a=$( ` + list + ` )
fresh=0; stale=0
while read -r p _ _ t; do
case $t in *'worker process'*) ;; *) continue ;; esac
case $t in *'shutting down'*) continue ;; esac
case $old in *" $p "*) stale=1 ;; *) fresh=1 ;; esac
done <<MASTERSHRINK_EOF
$a
MASTERSHRINK_EOF
[ $fresh = 0 ] || [ $stale = 1 ] || break
done
[ -z "$a" ] || printf '%s\n' "$a"
exit 0
`
	return script
}

// parseListed reads reloadScript's outcome.
func (c *signalController) parseListed(res machine.Result, err error) (pid int, before, after []worker, _ error) {
	var ce *machine.CmdError
	if errors.As(err, &ce) && c.testFirst && ce.ExitCode == exitRejected {
		return 0, nil, nil, &rejectedError{nginxMessage(ce.Stderr)}
	}
	if errors.As(err, &ce) {
		shown := *ce
		shown.Cmd = nginxCmd(c.p) + " -s reload"
		err = &shown
	}
	if err != nil {
		return 0, nil, nil, fmt.Errorf("nginx -s reload: %w", err)
	}
	head, tail, ok := strings.Cut(string(res.Stdout), listedMark+"\n")
	first, rest, _ := strings.Cut(head, "\n")
	pid, perr := strconv.Atoi(strings.TrimSpace(first))
	if !ok || perr != nil {
		return 0, nil, nil, fmt.Errorf("nginx -s reload on %s: unexpected output %q", c.h.Name(), res.Stdout)
	}
	if pid <= 0 {
		return 0, nil, nil, nil
	}
	return pid, parseWorkers(rest), parseWorkers(tail), nil
}

func (c *signalController) Close() error { return nil }

func (e *Executor) reloadTimeout() time.Duration {
	if e.ReloadTimeout > 0 {
		return e.ReloadTimeout
	}
	return 30 * time.Second
}

func (e *Executor) probeTimeout() time.Duration {
	if e.ProbeTimeout > 0 {
		return e.ProbeTimeout
	}
	return 30 * time.Second
}

// Apply rewrites one node's files atomically with backups, has the node's own proxy test
// them as its unit runs it (nginx -t, haproxy -c), and only then reloads through systemd
// (never a restart), waits for the proxy to run the new config (nginx: only new workers
// accept; haproxy: the master's current worker is one it forked after the reload) and probes
// the apiserver through the proxy. When the test rejects the files, the old content is
// written back and nothing is reloaded: the node keeps serving on its old config, and the
// error names the node and carries the proxy's message.
func (e *Executor) Apply(ctx context.Context, t NodeTarget) (NodeResult, error) {
	h := t.Host
	res := NodeResult{Host: h.Name(), Backups: map[string]string{}}
	listen := t.Listen
	if listen == "" {
		listen = t.Paths.NginxListen
	}

	pending, err := pendingChanges(ctx, h, t.Changes, t.Current)
	if err != nil {
		return res, err
	}

	ctl, err := e.controller(ctx, h, t.Paths)
	if err != nil {
		return res, fmt.Errorf("%s: %w", h.Name(), err)
	}
	defer ctl.Close()

	if len(pending) == 0 {
		paths := make([]string, 0, len(t.Changes))
		for _, c := range t.Changes {
			paths = append(paths, c.Path)
		}
		if len(paths) == 0 {
			paths = []string{e.mainConfig(t.Paths)}
		}
		if loaded, _ := e.loaded(ctx, h, ctl, paths); loaded {
			res.Skipped = true
			if err := e.probe(ctx, h, listen, t.TLS); err != nil {
				return res, err
			}
			return res, nil
		}
		// Written by an earlier run that did not get to the reload, or not provably loaded:
		// test and reload, which is harmless when nginx already runs this config.
	}

	// A node reloaded by signal tests and reloads in the command of its last write: one round
	// trip for the write, nginx -t, the reload and its wait.
	then := ""
	if sc, ok := ctl.(*signalController); ok {
		sc.testFirst = true
		sc.written = map[string]string{}
		for _, c := range pending {
			sc.written[c.Path] = c.After
		}
		if len(pending) > 0 {
			then = sc.reloadScript(ctx)
		}
	}
	restore, ran, err := writeChanges(ctx, h, pending, res.Backups, then)
	if err != nil {
		return res, err
	}
	if sc, ok := ctl.(*signalController); ok {
		sc.ran = ran
	}

	rejected := func(err error) (NodeResult, error) {
		if rerr := restore(); rerr != nil {
			return res, fmt.Errorf("%s: %w; the old config could not be restored: %w", h.Name(), err, rerr)
		}
		res.Backups = map[string]string{}
		return res, fmt.Errorf("%s: %w; old config restored, %s not reloaded", h.Name(), err, e.name())
	}
	if _, ok := ctl.(*signalController); !ok {
		if err := e.test(ctx, h, t.Paths); err != nil {
			return rejected(err)
		}
	}
	if err := e.reload(ctx, h, ctl); err != nil {
		if rej := (*rejectedError)(nil); errors.As(err, &rej) {
			return rejected(err)
		}
		if rerr := restore(); rerr != nil {
			return res, fmt.Errorf("%s: %w; the old config could not be restored: %w", h.Name(), err, rerr)
		}
		res.Backups = map[string]string{}
		return res, fmt.Errorf("%s: %w; old config restored", h.Name(), err)
	}
	if err := e.probe(ctx, h, listen, t.TLS); err != nil {
		return res, err
	}
	return res, nil
}

// Stage writes one node's files as Apply does (the same drift check, the same atomic writes
// with backups) and leaves the running proxy alone: it keeps its config until the node's next
// Apply, which finds the files newer than its workers and reloads. It is for a config the
// proxy ran before (an apiserver put back after its restart) when the node's own update
// follows in the same run: one reload then loads both, where two would cost every node a
// test, a reload and a probe more.
func (e *Executor) Stage(ctx context.Context, t NodeTarget) (NodeResult, error) {
	res := NodeResult{Host: t.Host.Name(), Backups: map[string]string{}}
	pending, err := pendingChanges(ctx, t.Host, t.Changes, t.Current)
	if err != nil {
		return res, err
	}
	res.Skipped = len(pending) == 0
	_, _, err = writeChanges(ctx, t.Host, pending, res.Backups, "")
	return res, err
}

// pendingChanges are the changes whose file still holds its planned old content; a file
// holding neither its old nor its new content is ErrDrift. current is what the caller read
// (NodeTarget.Current); the files it lacks are read.
func pendingChanges(ctx context.Context, h machine.Host, changes []machine.FileChange, current map[string]string) ([]machine.FileChange, error) {
	var pending []machine.FileChange
	for _, c := range changes {
		cur, ok := current[c.Path]
		if !ok {
			b, err := h.ReadFile(ctx, c.Path)
			if err != nil {
				return nil, fmt.Errorf("%s: read %s: %w", h.Name(), c.Path, err)
			}
			cur = string(b)
		}
		switch cur {
		case c.After:
		case c.Before:
			pending = append(pending, c)
		default:
			return nil, fmt.Errorf("%s: %s: %w", h.Name(), c.Path, ErrDrift)
		}
	}
	return pending, nil
}

// writeChanges writes each change's new content with a backup, noted in backups; the files
// already written are put back when one fails. restore puts them back later (a rejected test).
// A then is run in the command of the last write once it is in place (machine.WriteThen), its
// outcome in ran.
func writeChanges(ctx context.Context, h machine.Host, pending []machine.FileChange, backups map[string]string, then string) (restore func() error, ran *machine.ThenResult, err error) {
	var written []machine.FileChange
	restore = func() error {
		var errs []error
		for _, c := range written {
			if _, err := h.WriteFile(ctx, c.Path, []byte(c.Before), machine.WriteOptions{}); err != nil {
				errs = append(errs, fmt.Errorf("restore %s: %w", c.Path, err))
			}
		}
		return errors.Join(errs...)
	}
	for i, c := range pending {
		// Expect: the write checks on the node that the file still holds what pendingChanges
		// saw, without reading it again.
		opts := machine.WriteOptions{Backup: true, Expect: &c.Before}
		var wr machine.WriteResult
		if i == len(pending)-1 && then != "" {
			var tr machine.ThenResult
			if wr, tr, err = machine.WriteThen(ctx, h, c.Path, []byte(c.After), opts, then); err == nil {
				ran = &tr
			}
		} else {
			wr, err = h.WriteFile(ctx, c.Path, []byte(c.After), opts)
		}
		if err != nil {
			return restore, nil, fmt.Errorf("%s: write %s: %w", h.Name(), c.Path, errors.Join(err, restore()))
		}
		written = append(written, c)
		if wr.Backup != "" {
			backups[c.Path] = wr.Backup
		}
	}
	return restore, ran, nil
}

func (e *Executor) probe(ctx context.Context, h machine.Host, listen string, tlsConfig *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, e.probeTimeout())
	defer cancel()
	var last error
	for {
		last = Probe(ctx, h, listen, tlsConfig)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("apiserver did not answer through the proxy within %s: %w", e.probeTimeout(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// NginxTestCmd is the command that tests a node's config as its unit runs nginx.
func NginxTestCmd(p inventory.Paths) string {
	return nginxCmd(p) + " -t"
}

func nginxBin(p inventory.Paths) string {
	if p.NginxBinary == "" {
		return "nginx"
	}
	return shq(p.NginxBinary)
}

// nginxCmd is nginx with the node's prefix and config, as its unit runs it.
func nginxCmd(p inventory.Paths) string {
	cmd := nginxBin(p)
	if p.NginxPrefix != "" {
		cmd += " -p " + shq(p.NginxPrefix)
	}
	return cmd + " -c " + shq(p.NginxConfig)
}

func nginxTest(ctx context.Context, h machine.Host, p inventory.Paths) error {
	return testConfig(ctx, h, NginxTestCmd(p), "nginx -t", nginxMessage)
}

// testConfig runs a proxy's own test of its config (cmd); a rejection says what the proxy
// said, as message keeps it from its stderr.
func testConfig(ctx context.Context, h machine.Host, cmd, test string, message func(stderr string) string) error {
	_, err := h.Run(ctx, cmd)
	var ce *machine.CmdError
	if errors.As(err, &ce) {
		return fmt.Errorf("%s rejected the config: %s", test, message(ce.Stderr))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", test, err)
	}
	return nil
}

// nginxMessage keeps nginx's emerg/error lines, dropping the "test failed" trailer.
func nginxMessage(stderr string) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if strings.Contains(l, "test failed") {
			continue
		}
		keep = append(keep, strings.TrimSpace(l))
	}
	if len(keep) == 0 {
		return strings.TrimSpace(stderr)
	}
	return strings.Join(keep, "; ")
}

// reload reloads the unit and waits until nginx accepts only on workers it did not have
// before (old workers still serving their connections say "shutting down" and no longer
// accept), which is when the new config is live: `nginx -s reload` (the usual ExecReload)
// returns as soon as the signal is sent, and a reload nginx refuses leaves the old workers.
func reload(ctx context.Context, h machine.Host, ctl controller, timeout time.Duration) error {
	var (
		pid    int
		before map[int]bool
		seen   []worker // the workers after the reload, when already listed
	)
	if sc, ok := ctl.(*signalController); ok {
		p, ws, after, err := sc.reloadListed(ctx)
		if err != nil {
			return err
		}
		if p > 0 {
			pid, before, seen = p, pids(ws), after
		}
	} else {
		pid = ctl.mainPID(ctx)
		if pid > 0 {
			if ws, err := reloadWorkers(ctx, h, pid); err == nil {
				before = pids(ws)
			}
		}
		if err := ctl.reload(ctx); err != nil {
			return err
		}
	}
	if before == nil {
		// Workers cannot be listed here (no main PID or no ps): the probe that follows is
		// the only check.
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		ws := seen
		if ws == nil {
			var err error
			if ws, err = reloadWorkers(ctx, h, pid); err != nil {
				return fmt.Errorf("list nginx workers after the reload: %w", err)
			}
		}
		seen = nil
		fresh, stale := 0, 0
		for _, w := range ws {
			switch {
			case w.shuttingDown:
			case before[w.pid]:
				stale++
			default:
				fresh++
			}
		}
		if fresh > 0 && stale == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("reload: nginx (master %d) started no worker on the new config within %s (see its error log)", pid, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pids is the set of the workers' PIDs.
func pids(ws []worker) map[int]bool {
	m := make(map[int]bool, len(ws))
	for _, w := range ws {
		m[w.pid] = true
	}
	return m
}

type worker struct {
	pid          int
	age          int64 // seconds since start
	shuttingDown bool
}

// reloadWorkers lists the workers for the reload wait (nginxWorkersOf: no ages).
func reloadWorkers(ctx context.Context, h machine.Host, master int) ([]worker, error) {
	res, err := h.Run(ctx, nginxWorkersOf(strconv.Itoa(master)))
	if err != nil {
		return nil, err
	}
	return parseWorkers(string(res.Stdout)), nil
}

func workers(ctx context.Context, h machine.Host, master int) ([]worker, error) {
	res, err := h.Run(ctx, childrenCmd(master, false))
	if err != nil {
		return nil, err
	}
	return parseWorkers(string(res.Stdout)), nil
}

func parseWorkers(out string) []worker {
	var ws []worker
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l) // pid ppid etimes args (childrenCmd)
		if len(f) < 4 || !strings.Contains(l, "worker process") {
			continue
		}
		pid, err1 := strconv.Atoi(f[0])
		age, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		ws = append(ws, worker{pid: pid, age: age, shuttingDown: strings.Contains(l, "shutting down")})
	}
	return ws
}

// runningSince says whether every live nginx worker started at or after the last change of
// paths, that is whether nginx was (re)loaded after they were written. It answers false when
// it cannot tell. Known limits: one-second resolution, and a worker the master respawned
// after a crash looks like a reload.
func runningSince(ctx context.Context, h machine.Host, ctl controller, paths []string) (bool, error) {
	pid := ctl.mainPID(ctx)
	if pid <= 0 {
		return false, nil
	}
	out, now, mtime, err := machine.AfterChange(ctx, h, childrenCmd(pid, false), paths)
	if err != nil {
		return false, err
	}
	ws := parseWorkers(out)
	live := 0
	for _, w := range ws {
		if w.shuttingDown {
			continue
		}
		live++
		if now-w.age < mtime {
			return false, nil
		}
	}
	return live > 0, nil
}

// CutOldWorkers tells the workers of a node's proxy still finishing connections from before
// a reload to stop now (SIGTERM: a fast shutdown of that worker only; for haproxy, see
// hapCutOld), so their clients reconnect through the new workers. The master is found as the
// Executor's Reload finds it (systemd's main PID, or the pid file); no master running is
// nothing to cut.
func (e *Executor) CutOldWorkers(ctx context.Context, h machine.Host, p inventory.Paths) error {
	ctl, err := e.controller(ctx, h, p)
	if err != nil {
		return fmt.Errorf("%s: %w", h.Name(), err)
	}
	defer ctl.Close()
	if sc, ok := ctl.(*signalController); ok {
		// The pid file read by the same command: one round trip per node.
		cmd := sc.pidScript(ctx) + "[ \"$pid\" -gt 0 ] || exit 0\n" + cutShuttingDown(`"$pid"`)
		if _, err := h.Run(ctx, cmd); err != nil {
			return fmt.Errorf("close old nginx workers on %s: %w", h.Name(), err)
		}
		return nil
	}
	pid := ctl.mainPID(ctx)
	if pid <= 0 {
		return nil
	}
	if e.Kind == KindHAProxy {
		if err := hapCutOld(ctx, h, pid); err != nil {
			return fmt.Errorf("close old haproxy workers on %s: %w", h.Name(), err)
		}
		return nil
	}
	cmd := cutShuttingDown(strconv.Itoa(pid))
	if _, err := h.Run(ctx, cmd); err != nil {
		return fmt.Errorf("close old nginx workers on %s: %w", h.Name(), err)
	}
	return nil
}

// name is the proxy's program, for messages.
func (e *Executor) name() string {
	if e.Kind == KindHAProxy {
		return "haproxy"
	}
	return "nginx"
}

// mainConfig is the file the node's proxy is started with.
func (e *Executor) mainConfig(p inventory.Paths) string {
	if e.Kind == KindHAProxy {
		cfg, _, _ := p.HAProxyPaths()
		return cfg
	}
	return MainConfigPath(p)
}

// test has the node's proxy check its config as its unit runs it: nginx -t, haproxy -c.
func (e *Executor) test(ctx context.Context, h machine.Host, p inventory.Paths) error {
	if e.Kind == KindHAProxy {
		return hapTest(ctx, h, p)
	}
	return nginxTest(ctx, h, p)
}

// reload reloads the proxy and waits until it runs the new config.
func (e *Executor) reload(ctx context.Context, h machine.Host, ctl controller) error {
	if e.Kind == KindHAProxy {
		return hapReload(ctx, h, ctl, e.reloadTimeout())
	}
	return reload(ctx, h, ctl, e.reloadTimeout())
}

// loaded says whether the running proxy was (re)loaded after paths last changed.
func (e *Executor) loaded(ctx context.Context, h machine.Host, ctl controller, paths []string) (bool, error) {
	if e.Kind == KindHAProxy {
		return hapLoaded(ctx, h, ctl, paths)
	}
	return runningSince(ctx, h, ctl, paths)
}

// Undo restores backups with a default Executor; see (*Executor).Undo.
func Undo(ctx context.Context, h machine.Host, p inventory.Paths, backups map[string]string) error {
	var e Executor
	return e.Undo(ctx, h, p, backups)
}

// Undo writes each backup (file path to backup path) back over its file, has the proxy test
// the result and reloads. It is the way back from Apply, with Summary.Backups[node].
func (e *Executor) Undo(ctx context.Context, h machine.Host, p inventory.Paths, backups map[string]string) error {
	paths := make([]string, 0, len(backups))
	for f := range backups {
		paths = append(paths, f)
	}
	sort.Strings(paths)
	for _, f := range paths {
		data, err := h.ReadFile(ctx, backups[f])
		if err != nil {
			return fmt.Errorf("%s: undo %s: read backup: %w", h.Name(), f, err)
		}
		if _, err := h.WriteFile(ctx, f, data, machine.WriteOptions{}); err != nil {
			return fmt.Errorf("%s: undo %s: %w", h.Name(), f, err)
		}
	}
	if err := e.test(ctx, h, p); err != nil {
		return fmt.Errorf("%s: undo: %w", h.Name(), err)
	}
	ctl, err := e.controller(ctx, h, p)
	if err != nil {
		return fmt.Errorf("%s: undo: %w", h.Name(), err)
	}
	defer ctl.Close()
	if err := e.reload(ctx, h, ctl); err != nil {
		return fmt.Errorf("%s: undo: %w", h.Name(), err)
	}
	return nil
}

// shq quotes a word for sh, leaving a plain one bare.
var shq = machine.Word
