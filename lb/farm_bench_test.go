package lb

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sys/unix"

	"github.com/mastershrink/mastershrink/certs/certstest"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/sshdtest"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/testenv"
)

var farmHosts = flag.Int("lb.hosts", 200, "simulated hosts in BenchmarkLB200Hosts")

// farmAPIServers are the three TLS stand-ins for the apiservers, on the hub's bridge.
var farmAPIServers = []string{"10.77.0.11:6443", "10.77.0.12:6443", "10.77.0.13:6443"}

// BenchmarkLB200Hosts marks one apiserver down on -lb.hosts simulated nodes, over real SSH:
// each node is a network namespace on one bridge running its own sshd and an nginx with
// seed 003's stream config in front of three TLS stand-ins. One op is Observe + Rewrite of
// every node (over SSH, fleetConcurrency at a time), then ApplyAll with the default
// concurrency (write with backup, nginx -t, reload, wait for the new workers, probe through
// the proxy). The nodes run no systemd, so the Executor reloads with ReloadSignal. Reported:
// the two phases' times and the process's peak memory (Go heap in use, sampled; maxrss).
func BenchmarkLB200Hosts(b *testing.B) {
	if os.Getenv("MASTERSHRINK_LAB") != "1" {
		b.Skip("lab benchmark: run with MASTERSHRINK_LAB=1; needs root")
	}
	if os.Geteuid() != 0 {
		b.Skip("needs root (network namespaces, sshd)")
	}
	requireNginx(b)
	for _, bin := range []string{"/usr/sbin/sshd", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			b.Skipf("%s not installed", bin)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f := startFarm(b, ctx, *farmHosts)
	e := Executor{Reload: ReloadSignal}

	var planTime, applyTime time.Duration
	var peakHeap uint64
	for b.Loop() {
		stopSampling := sampleHeap(&peakHeap)
		start := time.Now()
		cfgs, errs := host.Collect(ctx, f.names, fleetConcurrency, func(ctx context.Context, name string) (NodeConfig, error) {
			return Observe(ctx, f.hosts[name], f.paths[name], farmAPIServers)
		})
		if len(errs) > 0 {
			b.Fatalf("observe: %d nodes failed, e.g. %v", len(errs), firstErr(errs))
		}
		targets := make([]NodeTarget, 0, len(f.names))
		for _, name := range f.names {
			changes, err := Rewrite(cfgs[name], farmAPIServers[2:], MarkDown)
			if err != nil || len(changes) != 1 {
				b.Fatalf("rewrite %s: %d changes, %v", name, len(changes), err)
			}
			targets = append(targets, NodeTarget{Host: f.hosts[name], Paths: f.paths[name], Changes: changes, Listen: cfgs[name].Listen})
		}
		planTime += time.Since(start)
		start = time.Now()
		var progress bytes.Buffer
		sum := e.ApplyAll(ctx, targets, 0, &progress)
		applyTime += time.Since(start)
		stopSampling()
		if err := sum.Err(); err != nil || len(sum.Done) != len(f.names) {
			b.Fatalf("apply: %d of %d done: %v", len(sum.Done), len(f.names), err)
		}

		// Back to the original config for the next op, untimed.
		b.StopTimer()
		undo := host.ForEach(ctx, f.names, fleetConcurrency, func(ctx context.Context, name string) error {
			return e.Undo(ctx, f.hosts[name], f.paths[name], sum.Backups[name])
		})
		if len(undo) > 0 {
			b.Fatalf("undo: %d nodes failed, e.g. %v", len(undo), firstErr(undo))
		}
		b.StartTimer()
	}
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	n := float64(b.N)
	b.ReportMetric(float64(len(f.names)), "hosts")
	b.ReportMetric(float64(planTime.Milliseconds())/n, "observe-ms")
	b.ReportMetric(float64(applyTime.Milliseconds())/n, "apply-ms")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(ru.Maxrss)/1024, "maxrss-MB")
}

func firstErr(errs map[string]error) error {
	for _, err := range errs {
		return err
	}
	return nil
}

// sampleHeap records the peak of the Go heap in use every 20 ms until stopped.
func sampleHeap(peak *uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > *peak {
				*peak = ms.HeapInuse
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// farm is a set of simulated nodes: network namespaces on one bridge (in a hub namespace
// that also holds the apiserver stand-ins), each running sshd and nginx.
type farm struct {
	names []string
	hosts map[string]host.Host
	paths map[string]inventory.Paths
}

type farmProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func startFarm(b *testing.B, ctx context.Context, count int) *farm {
	b.Helper()
	if count < 1 || count > 250*200 {
		b.Fatalf("-lb.hosts %d out of range", count)
	}
	dir := b.TempDir()
	prefix := fmt.Sprintf("lbf%x", os.Getpid()&0xffff)
	hub := prefix + "-hub"
	f := &farm{hosts: map[string]host.Host{}, paths: map[string]inventory.Paths{}}
	addrs := map[string]string{}
	for i := range count {
		name := fmt.Sprintf("n%03d", i+1)
		f.names = append(f.names, name)
		addrs[name] = fmt.Sprintf("10.77.%d.%d", 1+i/250, 1+i%250)
	}
	ns := func(name string) string { return prefix + "-" + name }

	// Teardown, registered first so it runs last: processes by the PIDs started here, then
	// the namespaces (which takes the veths and the bridge with them).
	var procsMu sync.Mutex
	var procs []*farmProc
	b.Cleanup(func() {
		procsMu.Lock()
		defer procsMu.Unlock()
		for _, p := range procs {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
		deadline := time.After(20 * time.Second)
		for _, p := range procs {
			select {
			case <-p.exited:
			case <-deadline:
				p.cmd.Process.Kill()
				<-p.exited
			}
		}
		var batch strings.Builder
		for _, n := range f.names {
			fmt.Fprintf(&batch, "netns del %s\n", ns(n))
		}
		fmt.Fprintf(&batch, "netns del %s\n", hub)
		if err := testenv.IPBatch(context.Background(), "", batch.String()); err != nil {
			b.Errorf("delete the farm's namespaces: %v", err)
		}
	})
	start := func(logf *os.File, netns string, args ...string) *farmProc {
		cmd := exec.Command("ip", append([]string{"netns", "exec", netns}, args...)...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		p := &farmProc{cmd: cmd, exited: make(chan struct{})}
		go func() { cmd.Wait(); close(p.exited) }()
		procsMu.Lock()
		procs = append(procs, p)
		procsMu.Unlock()
		return p
	}

	t0 := time.Now()
	// Network: the hub holds br0 with the stand-ins' addresses; each node a veth on it.
	var batch strings.Builder
	fmt.Fprintf(&batch, "netns add %s\n", hub)
	for _, n := range f.names {
		fmt.Fprintf(&batch, "netns add %s\n", ns(n))
	}
	mustIP(b, ctx, "", batch.String())
	batch.Reset()
	batch.WriteString("link set lo up\nlink add br0 type bridge\nlink set br0 up\naddr add 10.77.0.1/16 dev br0\n")
	for _, a := range farmAPIServers {
		fmt.Fprintf(&batch, "addr add %s/16 dev br0\n", strings.Split(a, ":")[0])
	}
	for i, n := range f.names {
		fmt.Fprintf(&batch, "link add v%d type veth peer name eth0 netns %s\nlink set v%d master br0 up\n", i, ns(n), i)
	}
	mustIP(b, ctx, hub, batch.String())
	parallel(b, f.names, 16, func(n string) error {
		if err := testenv.IPBatch(ctx, ns(n), fmt.Sprintf("link set lo up\naddr add %s/16 dev eth0\nlink set eth0 up\n", addrs[n])); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		return nil
	})

	// Keys: one host key for every sshd (each node still has its own known_hosts line), one
	// client key.
	hostPub := sshdtest.WriteKey(b, filepath.Join(dir, "ssh_host_ed25519_key"))
	clientPub := sshdtest.WriteKey(b, filepath.Join(dir, "id_ed25519"))
	writeFile(b, filepath.Join(dir, "authorized_keys"), string(ssh.MarshalAuthorizedKey(clientPub)))
	var kh strings.Builder
	for _, n := range f.names {
		kh.WriteString(knownhosts.Line([]string{knownhosts.Normalize(addrs[n])}, hostPub) + "\n")
	}
	writeFile(b, filepath.Join(dir, "known_hosts"), kh.String())
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		b.Fatal(err)
	}
	emptyRC := filepath.Join(dir, "bashrc")
	writeFile(b, emptyRC, "")
	sshdConf := filepath.Join(dir, "sshd_config")
	writeFile(b, sshdConf, fmt.Sprintf(`ListenAddress 0.0.0.0:22
HostKey %[1]s/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile %[1]s/authorized_keys
%[2]sLogLevel ERROR
`, dir, sshdtest.Settings))

	// The stand-ins: one nginx answering TLS on the three addresses.
	backendDir := filepath.Join(dir, "apiservers")
	selfSigned(b, backendDir)
	writeFile(b, filepath.Join(backendDir, "nginx.conf"), fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events {
    worker_connections 8192;
}
http {
    access_log off;
    server {
        listen %[2]s ssl;
        listen %[3]s ssl;
        listen %[4]s ssl;
        ssl_certificate %[1]s/cert.pem;
        ssl_certificate_key %[1]s/key.pem;
        location = /readyz { return 200 "ok"; }
        location / { return 404; }
    }
}
`, backendDir, farmAPIServers[0], farmAPIServers[1], farmAPIServers[2]))
	logf, err := os.OpenFile(filepath.Join(dir, "farm.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { logf.Close() })
	start(logf, hub, "nginx", "-p", backendDir+"/", "-c", filepath.Join(backendDir, "nginx.conf"), "-e", filepath.Join(backendDir, "error.log"), "-g", "daemon off;")

	// Every node: seed 003's kube-nginx config under its own prefix, and sshd.
	var inv strings.Builder
	// The inventory must name a kubeconfig; the LB fan-out never uses it.
	writeFile(b, filepath.Join(dir, "kubeconfig"), "apiVersion: v1\nkind: Config\n")
	fmt.Fprintf(&inv, "format_version: 1\ncluster: lbfarm\nlayout: seed003\nkubeconfig: kubeconfig\nssh:\n  user: root\n  identity_file: id_ed25519\n  known_hosts: known_hosts\n  connect_timeout: 30s\nhosts:\n")
	for _, n := range f.names {
		p := filepath.Join(dir, "nodes", n)
		conf := filepath.Join(p, "kube-nginx.conf")
		if err := os.MkdirAll(filepath.Join(p, "logs"), 0o755); err != nil {
			b.Fatal(err)
		}
		writeFile(b, conf, seed003Conf(farmAPIServers))
		fmt.Fprintf(&inv, "  - name: %s\n    address: %s\n    roles: [worker]\n    paths:\n      nginx_binary: /usr/sbin/nginx\n      nginx_prefix: %s\n      nginx_config: %s\n", n, addrs[n], p, conf)
		start(logf, ns(n), "/usr/sbin/nginx", "-p", p, "-c", conf, "-e", filepath.Join(p, "logs", "error.log"), "-g", "daemon off;")
		// A root ~/.bashrc of this machine's own (bash reads it for every SSH command) would
		// be in every session's time: the node's sshd sees an empty one, in the private mount
		// namespace ip netns exec gives it.
		start(logf, ns(n), "sh", "-c", fmt.Sprintf("if [ -f /root/.bashrc ]; then mount --bind %s /root/.bashrc || exit 1; fi; exec /usr/sbin/sshd -D -e -f %s",
			shq(emptyRC), shq(sshdConf)))
	}
	invFile := filepath.Join(dir, "inventory.yaml")
	writeFile(b, invFile, inv.String())
	in, err := inventory.Load(invFile)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range f.names {
		h, _ := in.Host(n)
		f.paths[n] = h.Paths
	}

	// Connected when sshd answers; nginx is up when it has written its pid file.
	dial := testenv.DialerIn("/run/netns/" + hub)
	hosts, errs := host.Collect(ctx, f.names, fleetConcurrency, func(ctx context.Context, name string) (host.Host, error) {
		deadline := time.Now().Add(60 * time.Second)
		for {
			h, err := host.Connect(ctx, in, name, dial)
			if err == nil {
				return h, nil
			}
			if time.Now().After(deadline) {
				return nil, err
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	for _, h := range hosts {
		b.Cleanup(func() { h.Close() })
	}
	if len(errs) > 0 {
		b.Fatalf("connect: %d hosts failed, e.g. %v", len(errs), firstErr(errs))
	}
	f.hosts = hosts
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range f.names {
		for {
			if _, err := os.Stat(filepath.Join(f.paths[n].NginxPrefix, "logs", "kube-nginx.pid")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(logf.Name())
				b.Fatalf("%s: nginx wrote no pid file: %s", n, log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := Probe(ctx, f.hosts[f.names[0]], f.paths[f.names[0]].NginxListen, nil); err != nil {
		b.Fatalf("farm up but no apiserver through the first node's proxy: %v", err)
	}
	b.Logf("farm of %d hosts up in %s", count, time.Since(t0).Round(time.Millisecond))
	return f
}

// seed003Conf is seed 003's kube-nginx.conf, as the lab renders it.
func seed003Conf(apiservers []string) string {
	var s strings.Builder
	s.WriteString("load_module " + streamModule + ";\nworker_processes 1;\npid logs/kube-nginx.pid;\nerror_log logs/error.log warn;\n" +
		"events {\n    worker_connections  1024;\n}\nstream {\n    upstream apiserver {\n      hash $remote_addr consistent;\n")
	for _, a := range apiservers {
		fmt.Fprintf(&s, "      server %s max_fails=3 fail_timeout=30s;\n", a)
	}
	s.WriteString("    }\n\n    server {\n        listen *:8443;\n        proxy_connect_timeout 1s;\n        proxy_pass apiserver;\n    }\n}\n")
	return s.String()
}

func mustIP(b *testing.B, ctx context.Context, netns, batch string) {
	b.Helper()
	if err := testenv.IPBatch(ctx, netns, batch); err != nil {
		b.Fatal(err)
	}
}

func parallel(b *testing.B, names []string, n int, fn func(string) error) {
	b.Helper()
	sem := make(chan struct{}, n)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(name); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		b.Fatalf("%d failed, e.g. %v", len(errs), errs[0])
	}
}

func writeFile(b *testing.B, p, s string) {
	b.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		b.Fatal(err)
	}
}

// selfSigned writes cert.pem and key.pem for the stand-ins.
func selfSigned(b *testing.B, dir string) {
	b.Helper()
	var ips []string
	for _, a := range farmAPIServers {
		ips = append(ips, strings.Split(a, ":")[0])
	}
	certPEM, keyPEM, err := certstest.SelfSigned("kubernetes", ips)
	if err != nil {
		b.Fatal(err)
	}
	writeFile(b, filepath.Join(dir, "cert.pem"), string(certPEM))
	writeFile(b, filepath.Join(dir, "key.pem"), string(keyPEM))
}
