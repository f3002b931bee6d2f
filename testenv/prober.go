package testenv

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Probe is one availability request made from a worker through its local proxy.
type Probe struct {
	Worker   string
	Start    time.Time
	Duration time.Duration
	// Err is empty for a success (HTTP 200 from /readyz).
	Err string
}

// WorkerProbes counts one worker's probes.
type WorkerProbes struct {
	Total, Failed int
}

// ProbeReport summarises a prober's run.
type ProbeReport struct {
	Start, End    time.Time
	Total, Failed int
	PerWorker     map[string]WorkerProbes
	// FirstFailure and LastFailure are zero when nothing failed.
	FirstFailure, LastFailure time.Time
	// LongestGap is the longest time any one worker went without a successful probe
	// (from its last success, or the start, to its next success, or the end).
	LongestGap time.Duration
	// Failures lists every failed probe in time order.
	Failures []Probe
}

func (r ProbeReport) String() string {
	s := fmt.Sprintf("%d probes, %d failed, longest gap %s", r.Total, r.Failed, r.LongestGap.Round(time.Millisecond))
	if r.Failed > 0 {
		s += fmt.Sprintf(", failures from %s to %s", r.FirstFailure.Format("15:04:05.000"), r.LastFailure.Format("15:04:05.000"))
	}
	return s
}

// Prober sends a steady stream of API requests from every worker through that worker's
// local proxy, as the worker's kubelet would, and records each result.
type Prober struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  time.Time
	mu     sync.Mutex
	probes []Probe
}

// StartProber starts perSecond GET /readyz requests per second from each worker (sockets made in
// the worker's network namespace, to its proxy's listen address, with the admin certificate),
// until Stop. Each request has a timeout of one second. With no workers it probes from the
// masters' proxies instead.
func (l *Lab) StartProber(ctx context.Context, perSecond int) *Prober {
	lay, _ := LookupLayout(l.Layout)
	return l.startProber(ctx, perSecond, lay.Paths.NginxListen, "", time.Second)
}

// StartProberVia is StartProber through one front for every worker (the VIP of AddVIP),
// verifying the apiserver's certificate for serverName, with a timeout of two seconds: a
// VIP moving between keepalived hosts has no holder for the backup's skew time (0.6 s at
// priority 100), and a connection begun meanwhile waits for TCP's retry; clients of a VIP
// live with that, so here a request fails only past 2 s (the report's longest gap says how
// long it was).
func (l *Lab) StartProberVia(ctx context.Context, perSecond int, front, serverName string) *Prober {
	return l.startProber(ctx, perSecond, front, serverName, 2*time.Second)
}

func (l *Lab) startProber(ctx context.Context, perSecond int, front, serverName string, timeout time.Duration) *Prober {
	if perSecond <= 0 {
		perSecond = 20
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &Prober{cancel: cancel, start: time.Now()}
	var from []Machine
	for _, m := range l.Machines {
		if l.hasRole(m, "worker") {
			from = append(from, m)
		}
	}
	if len(from) == 0 {
		from = l.withRole("master")
	}
	interval := time.Second / time.Duration(perSecond)
	for _, m := range from {
		hc, err := l.HTTPClient(DialerIn(m.NetNS))
		if err != nil {
			p.record(Probe{Worker: m.Name, Start: time.Now(), Err: err.Error()})
			continue
		}
		hc.Timeout = timeout
		if serverName != "" {
			hc.Transport.(*http.Transport).TLSClientConfig.ServerName = serverName
		}
		// A fresh connection for each probe would measure nginx's connection handling, a
		// kept-alive one sticks to one apiserver: keep alive, as clients do.
		url := "https://" + front + "/readyz"
		p.wg.Add(1)
		go func(name string, hc *http.Client) {
			defer p.wg.Done()
			defer hc.CloseIdleConnections()
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				s := time.Now()
				rctx, rcancel := context.WithTimeout(ctx, timeout)
				code, body, err := get(rctx, hc, url)
				rcancel()
				if ctx.Err() != nil {
					return // stopping, not a failure
				}
				pr := Probe{Worker: name, Start: s, Duration: time.Since(s)}
				switch {
				case err != nil:
					pr.Err = err.Error()
				case code != 200:
					pr.Err = fmt.Sprintf("HTTP %d: %s", code, lastLine(body))
				}
				p.record(pr)
			}
		}(m.Name, hc)
	}
	return p
}

func (p *Prober) record(pr Probe) {
	p.mu.Lock()
	p.probes = append(p.probes, pr)
	p.mu.Unlock()
}

// Probes returns a copy of every result so far.
func (p *Prober) Probes() []Probe {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Probe(nil), p.probes...)
}

// Stop ends the probing and summarises it.
func (p *Prober) Stop() ProbeReport {
	p.cancel()
	p.wg.Wait()
	end := time.Now()
	probes := p.Probes()
	sort.Slice(probes, func(i, j int) bool { return probes[i].Start.Before(probes[j].Start) })
	r := ProbeReport{Start: p.start, End: end, PerWorker: map[string]WorkerProbes{}}
	lastOK := map[string]time.Time{}
	for _, pr := range probes {
		w := r.PerWorker[pr.Worker]
		w.Total++
		r.Total++
		if pr.Err != "" {
			w.Failed++
			r.Failed++
			if r.FirstFailure.IsZero() {
				r.FirstFailure = pr.Start
			}
			r.LastFailure = pr.Start
			r.Failures = append(r.Failures, pr)
		} else {
			from, ok := lastOK[pr.Worker]
			if !ok {
				from = p.start
			}
			if gap := pr.Start.Add(pr.Duration).Sub(from); gap > r.LongestGap {
				r.LongestGap = gap
			}
			lastOK[pr.Worker] = pr.Start.Add(pr.Duration)
		}
		r.PerWorker[pr.Worker] = w
	}
	for w := range r.PerWorker {
		from, ok := lastOK[w]
		if !ok {
			from = p.start
		}
		if gap := end.Sub(from); gap > r.LongestGap {
			r.LongestGap = gap
		}
	}
	return r
}
