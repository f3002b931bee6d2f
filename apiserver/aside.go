package apiserver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
)

// An nginx stream proxy has no health checks, so while an apiserver shuts down it keeps
// sending it requests: on kept-alive connections /readyz answers 500 from SIGTERM until the
// apiserver's pre-shutdown hooks finish (about 200 ms in the lab), and new connections reach
// it again as soon as it listens, before it is ready. A graceful reload that marks it down
// is not enough either: the old nginx workers keep their clients' connections, to this
// apiserver too, until the clients close them. So the restart takes it out of every proxy
// and ends the old workers first, and puts it back only once it is ready.

// Proxy is one node's apiserver proxy, as ProxyAside edits it.
type Proxy struct {
	Host  host.Host
	Paths inventory.Paths
	// Cut ends the proxy's old workers after the reload, which moves its clients off the
	// apiserver at once. Set it where the clients are kubelets and health checks: cheap to
	// move, and a shutting-down apiserver answers /readyz with 500 on kept-alive connections.
	// Leave it off on masters: after an abrupt close the controller-manager's informers
	// relist everything (in the lab the next apiserver stalled for over a second, even on
	// /livez), while the apiserver's own shutdown closes their connections gracefully
	// (GOAWAY) and they resume their watches.
	Cut bool
}

// DefaultAsideStagger is ProxyAside's pause between two proxies' old workers being ended.
const DefaultAsideStagger = 500 * time.Millisecond

// ProxyAside returns a RestartStep.Aside for the apiserver at addr ("ip:port"). Aside, it
// marks addr down in every proxy (lb.Rewrite with lb.MarkDown, nginx -t, graceful reload;
// concurrently), so no new connection reaches it while it stops and starts; then, on the
// proxies with Cut, it ends the old workers (SIGTERM, which closes their connections at once:
// the clients reconnect through the new workers to another apiserver, and HTTP clients retry
// idempotent requests), one proxy at a time with stagger between them (0 means
// DefaultAsideStagger). Back, it writes each file's old content back and reloads, leaving
// the clients where they are. A proxy where addr is not live is left alone. Back undoes
// whatever aside did, also after a partial failure.
//
// The stagger spreads the reconnections: every client of a node moves at once, and hundreds
// of kubelets moving in the same instant all land on the next apiserver.
func ProxyAside(proxies []Proxy, addr string, stagger time.Duration) func(ctx context.Context, aside bool) error {
	if stagger <= 0 {
		stagger = DefaultAsideStagger
	}
	var mu sync.Mutex
	done := map[string][]host.FileChange{} // node -> the changes aside applied
	return func(ctx context.Context, aside bool) error {
		var errs []error
		stale := make([][]string, len(proxies))
		var wg sync.WaitGroup
		sem := make(chan struct{}, lb.DefaultConcurrency)
		for i, p := range proxies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				var err error
				if aside {
					var changes []host.FileChange
					changes, stale[i], err = takeAside(ctx, p, addr)
					if !p.Cut {
						stale[i] = nil
					}
					if len(changes) > 0 {
						mu.Lock()
						done[p.Host.Name()] = changes
						mu.Unlock()
					}
				} else {
					mu.Lock()
					changes := done[p.Host.Name()]
					mu.Unlock()
					if len(changes) > 0 {
						err = putBack(ctx, p, changes)
						if err == nil {
							mu.Lock()
							delete(done, p.Host.Name())
							mu.Unlock()
						}
					}
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(errs) > 0 || !aside {
			return errors.Join(errs...)
		}
		first := true
		for i, p := range proxies {
			if len(stale[i]) == 0 {
				continue
			}
			if !first {
				select {
				case <-ctx.Done():
					return fmt.Errorf("end the old nginx workers: %w", ctx.Err())
				case <-time.After(stagger):
				}
			}
			first = false
			// Gone by now is fine: the worker finished its connections by itself.
			if _, err := p.Host.Run(ctx, "kill -TERM "+strings.Join(stale[i], " ")+" 2>/dev/null || true"); err != nil {
				errs = append(errs, fmt.Errorf("end the old nginx workers on %s: %w", p.Host.Name(), err))
			}
		}
		return errors.Join(errs...)
	}
}

// takeAside marks addr down in one proxy and returns the changes it applied (nil when addr
// was not live there; also when it failed after writing them, so that putBack can undo
// them) and the PIDs of the old workers still finishing their connections.
func takeAside(ctx context.Context, p Proxy, addr string) ([]host.FileChange, []string, error) {
	h := p.Host
	cfg, err := lb.Observe(ctx, h, p.Paths, []string{addr})
	if err != nil {
		return nil, nil, fmt.Errorf("take %s out of the proxy on %s: %w", addr, h.Name(), err)
	}
	changes, err := lb.Rewrite(cfg, []string{addr}, lb.MarkDown)
	if err != nil {
		return nil, nil, fmt.Errorf("take %s out of the proxy on %s: %w", addr, h.Name(), err)
	}
	if len(changes) == 0 {
		return nil, nil, nil
	}
	sd, err := h.Systemd(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("take %s out of the proxy on %s: %w", addr, h.Name(), err)
	}
	defer sd.Close()
	old := nginxWorkers(ctx, h, sd, p.Paths.NginxUnit)
	var ex lb.Executor
	if _, err := ex.Apply(ctx, lb.NodeTarget{Host: h, Paths: p.Paths, Changes: changes}); err != nil {
		return changes, nil, fmt.Errorf("take %s out of the proxy on %s: %w", addr, h.Name(), err)
	}
	// The reload has waited until every worker from before it is shutting down; those still
	// there hold clients' connections, some of them to addr.
	var stale []string
	now := nginxWorkers(ctx, h, sd, p.Paths.NginxUnit)
	for pid := range old {
		if now[pid] {
			stale = append(stale, strconv.Itoa(pid))
		}
	}
	sort.Strings(stale)
	return changes, stale, nil
}

func putBack(ctx context.Context, p Proxy, changes []host.FileChange) error {
	back := make([]host.FileChange, len(changes))
	for i, c := range changes {
		back[i] = host.FileChange{Host: c.Host, Path: c.Path, Before: c.After, After: c.Before}
	}
	var ex lb.Executor
	if _, err := ex.Apply(ctx, lb.NodeTarget{Host: p.Host, Paths: p.Paths, Changes: back}); err != nil {
		return fmt.Errorf("put the apiserver back into the proxy on %s: %w", p.Host.Name(), err)
	}
	return nil
}

// nginxWorkers are the PIDs of the worker processes of the unit's nginx master, nil when
// they cannot be listed.
func nginxWorkers(ctx context.Context, h host.Host, sd host.Systemd, unit string) map[int]bool {
	st, err := sd.Status(ctx, unit)
	if err != nil || st.MainPID <= 0 {
		return nil
	}
	res, err := h.Run(ctx, fmt.Sprintf("ps -o pid=,args= --ppid %d", st.MainPID))
	if err != nil {
		return nil
	}
	out := map[int]bool{}
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.Contains(line, "worker process") {
			continue
		}
		if pid, err := strconv.Atoi(f[0]); err == nil {
			out[pid] = true
		}
	}
	return out
}
