package apiserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/internal/heartbeat"
)

const (
	// DefaultReadyDeadline bounds one restart until /readyz answers: kube-apiserver waits up
	// to --request-timeout (60 s by default) for watches before it exits, then starts.
	DefaultReadyDeadline = 90 * time.Second
	pollEvery            = time.Second
	// settleFor is how long a unit without a probe must stay active with the same main PID
	// to count as started (a crash loop changes the PID or leaves "active").
	settleFor = 5 * time.Second
)

// heartbeatEvery is how often a waiting step says so on the progress writer (a variable
// so that a test need not wait 10 s).
var heartbeatEvery = 10 * time.Second

var (
	// ErrProbeUnauthorized means the readiness probe was refused (401/403): the apiserver runs
	// with --anonymous-auth=false or without the public-info role; give a client certificate.
	ErrProbeUnauthorized = errors.New("readiness probe refused (give a client certificate)")
	// ErrNotReady means the component did not become ready before its deadline.
	ErrNotReady = errors.New("not ready")
	// ErrFileDrifted means a file to rewrite is neither the planned before nor after.
	ErrFileDrifted = errors.New("file changed since the plan")
)

// ReadyProbe checks one apiserver's /readyz (or a controller-manager/scheduler /healthz)
// through the host, so the address is seen from the host itself.
type ReadyProbe struct {
	// Address is "host:port" as seen from the host, for example Component.ProbeAddress().
	Address string
	// Path defaults to "/readyz".
	Path string
	// ServerName for TLS verification; defaults to Address's host.
	ServerName string
	// RootCAs is the cluster CA. Required unless InsecureSkipVerify.
	RootCAs *x509.CertPool
	// ClientCert is optional; needed when anonymous requests are refused.
	ClientCert *tls.Certificate
	// InsecureSkipVerify is only for the controller-manager's and scheduler's /healthz, whose
	// serving certificates are self-signed; the answer is a liveness bit, never data.
	InsecureSkipVerify bool
}

// Check asks once. nil means ready.
func (p ReadyProbe) Check(ctx context.Context, h host.Host) error {
	path := p.Path
	if path == "" {
		path = "/readyz"
	}
	sn := p.ServerName
	if sn == "" {
		sn, _, _ = net.SplitHostPort(p.Address)
	}
	cfg := &tls.Config{RootCAs: p.RootCAs, ServerName: sn, InsecureSkipVerify: p.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if p.ClientCert != nil {
		cfg.Certificates = []tls.Certificate{*p.ClientCert}
	}
	tr := &http.Transport{DialContext: h.DialContext, TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, "https://"+p.Address+path, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("GET %s%s: %s: %w", p.Address, path, resp.Status, ErrProbeUnauthorized)
	default:
		return fmt.Errorf("GET %s%s: %s: %s", p.Address, path, resp.Status, lastLines(string(body), 5))
	}
}

// WaitReady polls the probe until it answers ready, the deadline passes, or the probe is
// refused (which waiting cannot fix). what names the wait in heartbeat lines ("kube-apiserver
// on m1"); progress may be nil.
func WaitReady(ctx context.Context, h host.Host, p ReadyProbe, deadline time.Duration, progress io.Writer, what string) error {
	if deadline <= 0 {
		deadline = DefaultReadyDeadline
	}
	path := p.Path
	if path == "" {
		path = "/readyz"
	}
	hb := startHeartbeat(progress, "waiting for "+what+" "+path)
	defer hb.stop()
	return waitReady(ctx, h, p, time.Now().Add(deadline), what)
}

func waitReady(ctx context.Context, h host.Host, p ReadyProbe, until time.Time, what string) error {
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	var last error
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		last = p.Check(ctx, h)
		if last == nil {
			return nil
		}
		if errors.Is(last, ErrProbeUnauthorized) {
			return fmt.Errorf("%s: %w", what, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w by %s: last answer: %v", what, ErrNotReady, until.Format(time.RFC3339), last)
		case <-t.C:
		}
	}
}

// waitBeat prints "still PHASE [00m20s elapsed]" every heartbeatEvery until stopped; the
// phase changes as a restart moves from one wait to the next.
type waitBeat struct {
	mu    sync.Mutex
	phase string
	end   func()
}

func startHeartbeat(w io.Writer, phase string) *waitBeat {
	hb := &waitBeat{phase: phase, end: func() {}}
	if w == nil {
		return hb
	}
	hb.end = heartbeat.Start(context.Background(), heartbeatEvery, func(elapsed time.Duration) {
		hb.mu.Lock()
		defer hb.mu.Unlock()
		fmt.Fprintf(w, "still %s [%s elapsed]\n", hb.phase, heartbeat.Elapsed(elapsed))
	})
	return hb
}

func (hb *waitBeat) set(phase string) {
	hb.mu.Lock()
	hb.phase = phase
	hb.mu.Unlock()
}

func (hb *waitBeat) stop() { hb.end() }

// RestartStep is the change and restart of one component on one host.
type RestartStep struct {
	Host host.Host
	// Component names it in messages (KubeAPIServer, ...); Unit is the systemd unit.
	Component string
	Unit      string
	// Changes are written (atomically, with backups) before the restart. They may be empty:
	// a restart for a changed certificate or kubeconfig written by another step.
	Changes []host.FileChange
	// Probe gates the restart; nil waits until systemd shows the unit active with a steady
	// main PID for a few seconds.
	Probe *ReadyProbe
	// Deadline from the restart until ready; 0 means DefaultReadyDeadline.
	Deadline time.Duration
	// Aside, when set, takes the component out of the load balancers (aside true) before
	// anything is written, and puts it back (aside false) once it is ready again, with the
	// new files or after the rollback. It stays out when the rollback fails. A proxy without
	// health checks (nginx stream) keeps sending requests to an apiserver that is shutting
	// down, and its old workers keep their clients' connections after a reload: apply's
	// set-aside (runner/lbdrain.go) marks the apiserver down in every proxy and ends the old
	// workers of the workers' proxies.
	Aside func(ctx context.Context, aside bool) error
}

// RestartResult reports one step.
type RestartResult struct {
	Host      string            `json:"host"`
	Unit      string            `json:"unit"`
	Backups   map[string]string `json:"backups,omitempty"`
	Written   []string          `json:"written,omitempty"`
	Restarted time.Duration     `json:"restart_took"`
	Ready     time.Duration     `json:"ready_after"`
}

// RestartError is a component that did not come back with its new configuration.
type RestartError struct {
	Host string
	Unit string
	// Err says what failed (the restart job, or readiness by the deadline).
	Err error
	// Journal holds the unit's journal lines since the restart that explain the failure
	// (errors, systemd's lines; else the last ones), taken before the rollback.
	Journal []string
	// Restored is true when the old files are back and the component answers again.
	Restored   bool
	RestoreErr error
	Backups    map[string]string
	// AsideErr says why the component could not be put back into the load balancers.
	AsideErr error
}

func (e *RestartError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s on %s: %v", e.Unit, e.Host, e.Err)
	switch {
	case e.Restored:
		b.WriteString("; the previous files are back and it is serving again")
	case len(e.Backups) > 0 || e.RestoreErr != nil:
		fmt.Fprintf(&b, "; ROLLBACK INCOMPLETE: %v", e.RestoreErr)
	}
	if e.AsideErr != nil {
		fmt.Fprintf(&b, "; %v", e.AsideErr)
	}
	if len(e.Backups) > 0 {
		var bs []string
		for p, bak := range e.Backups {
			bs = append(bs, p+" -> "+bak)
		}
		sort.Strings(bs)
		fmt.Fprintf(&b, " (backups: %s)", strings.Join(bs, ", "))
	}
	if len(e.Journal) > 0 {
		fmt.Fprintf(&b, "; last journal lines (journalctl -u %s):\n  %s", e.Unit, strings.Join(e.Journal, "\n  "))
	}
	return b.String()
}

func (e *RestartError) Unwrap() error { return e.Err }

// ApplyAndRestart writes the step's files, reloads systemd, restarts the unit and waits until
// it is ready. If it is not, the old files are written back, systemd reloaded, the unit
// restarted and awaited, and a *RestartError names the host and the journal lines.
// Files that already hold their new content are not written again; the restart still
// happens (a resumed run cannot know whether the process read them).
func ApplyAndRestart(ctx context.Context, step RestartStep, progress io.Writer) (RestartResult, error) {
	h := step.Host
	res := RestartResult{Host: h.Name(), Unit: step.Unit, Backups: map[string]string{}}
	what := step.Component + " on " + h.Name()
	deadline := step.Deadline
	if deadline <= 0 {
		deadline = DefaultReadyDeadline
	}

	// Preflight: files as planned, component ready before we touch it.
	var toWrite []host.FileChange
	for _, c := range step.Changes {
		cur, err := h.ReadFile(ctx, c.Path)
		if err != nil {
			return res, fmt.Errorf("%s: read %s: %w", what, c.Path, err)
		}
		switch string(cur) {
		case c.After:
		case c.Before:
			toWrite = append(toWrite, c)
		default:
			return res, fmt.Errorf("%s: %s: %w", what, c.Path, ErrFileDrifted)
		}
	}
	if step.Probe != nil {
		if err := step.Probe.Check(ctx, h); err != nil {
			return res, fmt.Errorf("%s: not ready before the change, refusing to restart it: %w", what, err)
		}
	}
	sd, err := h.Systemd(ctx)
	if err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	defer sd.Close()

	if step.Aside != nil {
		hb := startHeartbeat(progress, "taking "+what+" out of the load balancers")
		err := step.Aside(ctx, true)
		hb.stop()
		if err != nil {
			// Nothing was written or restarted: put back whatever was taken out.
			if berr := step.Aside(context.WithoutCancel(ctx), false); berr != nil {
				err = fmt.Errorf("%w; putting it back: %w", err, berr)
			}
			return res, fmt.Errorf("%s: not restarted: %w", what, err)
		}
		if progress != nil {
			fmt.Fprintf(progress, "%s taken out of the load balancers\n", what)
		}
	}
	back := func(err error) error {
		if step.Aside == nil {
			return err
		}
		berr := step.Aside(context.WithoutCancel(ctx), false)
		if berr == nil {
			if progress != nil {
				fmt.Fprintf(progress, "%s back in the load balancers\n", what)
			}
			return err
		}
		berr = fmt.Errorf("%s: put back into the load balancers: %w", what, berr)
		if err == nil {
			return berr
		}
		var re *RestartError
		if errors.As(err, &re) {
			re.AsideErr = berr
			return re
		}
		return errors.Join(err, berr)
	}

	for _, c := range toWrite {
		wr, err := h.WriteFile(ctx, c.Path, []byte(c.After), host.WriteOptions{Backup: true})
		if err != nil {
			// Nothing was reloaded or restarted yet: putting the written files back is enough.
			rerr := restoreFiles(context.WithoutCancel(ctx), h, toWrite[:len(res.Written)])
			return res, back(&RestartError{Host: h.Name(), Unit: step.Unit, Err: fmt.Errorf("write %s: %w", c.Path, err), Restored: rerr == nil, RestoreErr: rerr, Backups: res.Backups})
		}
		if wr.Backup != "" {
			res.Backups[c.Path] = wr.Backup
		}
		res.Written = append(res.Written, c.Path)
	}

	cursor := journalCursor(ctx, h, step.Unit)
	hb := startHeartbeat(progress, "restarting "+what)
	start := time.Now()
	failErr := restartAndWait(ctx, step, sd, deadline, hb)
	hb.stop()
	res.Restarted = time.Since(start)
	if failErr == nil {
		res.Ready = res.Restarted
		return res, back(nil)
	}
	rerr := &RestartError{Host: h.Name(), Unit: step.Unit, Err: failErr, Backups: res.Backups}
	rerr.Journal = journal(ctx, h, step.Unit, cursor, 20)
	written := map[string]bool{}
	for _, p := range res.Written {
		written[p] = true
	}
	var restore []host.FileChange
	for _, c := range step.Changes {
		if written[c.Path] {
			restore = append(restore, c)
		}
	}
	if len(restore) == 0 && len(step.Changes) > 0 {
		// The files held the new content already (a resumed run): put back the planned before.
		restore = step.Changes
	}
	// The rollback runs even when the caller's context was cancelled: a half-applied unit
	// is worse than a late return.
	rerr.RestoreErr = rollback(context.WithoutCancel(ctx), step, sd, deadline, restore)
	rerr.Restored = rerr.RestoreErr == nil
	if !rerr.Restored {
		// Not serving: the load balancers are better off without it.
		return res, rerr
	}
	return res, back(rerr)
}

func restartAndWait(ctx context.Context, step RestartStep, sd host.Systemd, deadline time.Duration, hb *waitBeat) error {
	until := time.Now().Add(deadline)
	dctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	what := step.Component + " on " + step.Host.Name()
	if err := sd.DaemonReload(dctx); err != nil {
		return fmt.Errorf("daemon-reload: %w", err)
	}
	if err := sd.Restart(dctx, step.Unit); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	if step.Probe != nil {
		path := step.Probe.Path
		if path == "" {
			path = "/readyz"
		}
		hb.set("waiting for " + what + " " + path)
		return waitReady(ctx, step.Host, *step.Probe, until, what)
	}
	hb.set("waiting for " + what + " to stay active")
	return waitSettled(dctx, sd, step.Unit, until)
}

// waitSettled waits until the unit is active with the same main PID for settleFor.
func waitSettled(ctx context.Context, sd host.Systemd, unit string, until time.Time) error {
	var pid int
	var since time.Time
	var last host.UnitStatus
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		st, err := sd.Status(ctx, unit)
		if err == nil {
			last = st
			if st.ActiveState == "active" && st.MainPID != 0 {
				if st.MainPID != pid {
					pid, since = st.MainPID, time.Now()
				} else if time.Since(since) >= settleFor {
					return nil
				}
			} else {
				pid = 0
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s %w by %s: %s/%s", unit, ErrNotReady, until.Format(time.RFC3339), last.ActiveState, last.SubState)
		case <-t.C:
		}
	}
}

// rollback writes the before content of the given changes back (the same bytes the backups
// hold), reloads systemd, restarts the unit and waits until it is ready again.
func rollback(ctx context.Context, step RestartStep, sd host.Systemd, deadline time.Duration, restore []host.FileChange) error {
	if err := restoreFiles(ctx, step.Host, restore); err != nil {
		return err
	}
	hb := startHeartbeat(nil, "")
	defer hb.stop()
	if err := restartAndWait(ctx, step, sd, deadline, hb); err != nil {
		return fmt.Errorf("after restoring: %w", err)
	}
	return nil
}

func restoreFiles(ctx context.Context, h host.Host, restore []host.FileChange) error {
	var errs []error
	for _, c := range restore {
		if _, err := h.WriteFile(ctx, c.Path, []byte(c.Before), host.WriteOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", c.Path, err))
		}
	}
	return errors.Join(errs...)
}

// journalCursor is the position after the unit's last journal entry, "" when the unit has
// none or the journal cannot be read; journal then reads without it.
func journalCursor(ctx context.Context, h host.Host, unit string) string {
	jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	res, err := h.Run(jctx, fmt.Sprintf("journalctl -u %s -n 1 --show-cursor --no-pager -o cat", machine.Quote(unit)))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(res.Stdout), "\n") {
		if c, ok := strings.CutPrefix(l, "-- cursor: "); ok {
			return strings.TrimSpace(c)
		}
	}
	return ""
}

// journalScan bounds how much of the journal since the cursor is read: a crash-looping
// kube-apiserver at --v=2 logs a few hundred lines per start, mostly its flags.
const journalScan = 3000

// journal returns up to n journal lines of the unit after cursor that explain a failure (see
// explainLines), or the reason they could not be read.
func journal(ctx context.Context, h host.Host, unit, cursor string, n int) []string {
	jctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	cmd := fmt.Sprintf("journalctl -u %s -n %d --no-pager", machine.Quote(unit), journalScan)
	if cursor != "" {
		cmd += " --after-cursor=" + machine.Quote(cursor)
	}
	res, err := h.Run(jctx, cmd)
	if err != nil {
		return []string{"(journalctl: " + err.Error() + ")"}
	}
	return explainLines(strings.Split(strings.TrimRight(string(res.Stdout), "\n"), "\n"), n)
}

// explainRE matches journal lines that say why a component did not start: klog errors and
// fatals ("E1121 23:45:45.295342"), systemd's own lines about the unit, and lines naming an
// error. The last lines alone are often the next start's flag dump (FLAG: --x="...").
var explainRE = regexp.MustCompile(`: [EF]\d{4} |systemd\[\d+\]: |(?i:\b(error|fatal|failed|panic|unable|cannot)\b)`)

// explainLines keeps the last n lines that match explainRE, or the last n lines when none do.
func explainLines(lines []string, n int) []string {
	var keep []string
	for _, l := range lines {
		if explainRE.MatchString(l) && !strings.Contains(l, "] FLAG: --") {
			keep = append(keep, l)
		}
	}
	if len(keep) == 0 {
		keep = lines
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return keep
}

// RollingRestart applies the steps one at a time and stops at the first failure, so at most
// one apiserver is down while the load balancers route to the others.
func RollingRestart(ctx context.Context, steps []RestartStep, progress io.Writer) ([]RestartResult, error) {
	var out []RestartResult
	for _, s := range steps {
		r, err := ApplyAndRestart(ctx, s, progress)
		out = append(out, r)
		if err != nil {
			return out, err
		}
		if progress != nil {
			fmt.Fprintf(progress, "%s on %s restarted and ready in %s\n", s.Component, s.Host.Name(), heartbeat.Elapsed(r.Restarted))
		}
	}
	return out, nil
}

// DefaultRequestTimeout is kube-apiserver's --request-timeout default.
const DefaultRequestTimeout = 60 * time.Second

// ReadyDeadline is the deadline for one apiserver restart: its --request-timeout (60 s when
// unset) plus 60 s, and at least DefaultReadyDeadline. A client still connected when it
// stops (a watch straight to it, or through a proxy that keeps its connections) makes it wait
// out the request timeout before it exits; in the lab, the restart with the default took 70 s
// of which 9 s to start, and a big cluster's watch cache takes longer to fill.
func ReadyDeadline(c Component) time.Duration {
	rt := c.Flags.RequestTimeout
	if rt <= 0 {
		rt = DefaultRequestTimeout
	}
	if d := rt + 60*time.Second; d > DefaultReadyDeadline {
		return d
	}
	return DefaultReadyDeadline
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, " | ")
}
