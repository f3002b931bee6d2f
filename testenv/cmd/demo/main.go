package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mastershrink/mastershrink/internal/heartbeat"
	"github.com/mastershrink/mastershrink/testenv"
	"github.com/mastershrink/mastershrink/testenv/seed"
)

const seedKeys = 1000

type options struct {
	bin  string
	keep bool
	name string
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/mastershrink", "the mastershrink binary (make build)")
	flag.BoolVar(&o.keep, "keep", false, "leave the lab up at the end, and say how to get in and tear it down")
	flag.StringVar(&o.name, "name", "msdemo", "lab name")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo: %v\n", err)
		os.Exit(1)
	}
}

// terminal styling, off when stdout is not a terminal.
var (
	bold, dim, green, red, reset = "\x1b[1m", "\x1b[2m", "\x1b[32m", "\x1b[31m", "\x1b[0m"
	section                      = 0
	demoStart                    = time.Now()
)

func init() {
	if fi, err := os.Stdout.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		bold, dim, green, red, reset = "", "", "", "", ""
	}
}

func heading(title string) {
	section++
	fmt.Printf("\n%s%d. %s%s %s[%s]%s\n", bold, section, title, reset, dim, elapsed(), reset)
	fmt.Println(dim + strings.Repeat("─", 78) + reset)
}

func elapsed() string {
	s := int(time.Since(demoStart).Round(time.Second) / time.Second)
	return fmt.Sprintf("%02dm%02ds", s/60, s%60)
}

func run(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces, systemd-nspawn): run make demo as root")
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (make build makes it)", o.bin, err)
	}
	fmt.Printf("%smastershrink demo%s: retire two of three masters of a binary-deployed cluster,\n", bold, reset)
	fmt.Printf("with the API served throughout. Everything runs in a lab of systemd machines on this host.\n")

	heading("Bring up the lab: 3 masters (etcd + control plane), 2 workers")
	lab, err := up(ctx, o.name)
	if err != nil {
		return err
	}
	tearDown := func() {
		if o.keep {
			return
		}
		start := time.Now()
		lab.Log = io.Discard
		if err := lab.Down(context.Background()); err != nil {
			fmt.Printf("lab down: %v\n", err)
			return
		}
		fmt.Printf("Lab torn down in %s.\n", time.Since(start).Round(100*time.Millisecond))
	}
	defer tearDown()

	kube, err := kubeClient(lab)
	if err != nil {
		return err
	}
	heading("The cluster before")
	show(ctx, lab, kube)

	heading("Load: etcd keys, a Deployment, and an availability prober")
	if err := load(ctx, lab, kube); err != nil {
		return err
	}
	prober := lab.StartProber(ctx, 20)
	fmt.Printf("Prober started: 20 GET /readyz per second from each worker, through its local proxy,\nas the worker's kubelet reaches the API.\n")

	work, err := os.MkdirTemp("", "mastershrink-demo-")
	if err != nil {
		return err
	}
	planPath := filepath.Join(work, "plan.json")
	netns := filepath.Base(lab.NetNS)
	heading("mastershrink plan --remove m2,m3 --drain w2")
	cmdline(netns, bin, "plan", "-i", "inventory.yaml", "--remove", "m2,m3", "--drain", "w2", "--out", planPath)
	if err := mastershrink(ctx, netns, bin, lab, "plan", "-i", lab.Inventory, "--remove", "m2,m3", "--drain", "w2", "--out", planPath); err != nil {
		prober.Stop()
		return err
	}

	heading("mastershrink apply")
	cmdline(netns, bin, "apply", planPath, "-i", "inventory.yaml", "--yes")
	applyStart := time.Now()
	applyErr := mastershrink(ctx, netns, bin, lab, "apply", planPath, "-i", lab.Inventory, "--yes")
	applyTook := time.Since(applyStart)
	report := prober.Stop()

	heading("Availability during the shrink")
	verdict := green + "no request failed" + reset
	if report.Failed > 0 {
		verdict = fmt.Sprintf("%s%d requests failed%s (from %s to %s)", red, report.Failed, reset,
			report.FirstFailure.Format("15:04:05.000"), report.LastFailure.Format("15:04:05.000"))
	}
	fmt.Printf("%d requests over %s: %s; longest time a worker went without an answer: %s.\n",
		report.Total, report.End.Sub(report.Start).Round(time.Second), verdict, report.LongestGap.Round(time.Millisecond))
	workers := make([]string, 0, len(report.PerWorker))
	for w := range report.PerWorker {
		workers = append(workers, w)
	}
	sort.Strings(workers)
	for _, w := range workers {
		fmt.Printf("  %s: %d requests, %d failed\n", w, report.PerWorker[w].Total, report.PerWorker[w].Failed)
	}
	if applyErr != nil {
		return fmt.Errorf("mastershrink apply: %w", applyErr)
	}

	heading("The cluster after")
	show(ctx, lab, kube)
	ec, err := lab.EtcdClient(lab.EtcdEndpoints()[0])
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := seed.CheckKeys(cctx, ec, "/demo/", seedKeys); err != nil {
			fmt.Printf("%sseed keys: %v%s\n", red, err, reset)
		} else {
			fmt.Printf("\nAll %d keys written before the shrink are on the remaining member.\n", seedKeys)
		}
		cancel()
		ec.Close()
	}

	heading("Done")
	fmt.Printf("apply took %s; the whole demo %s.\n", applyTook.Round(time.Second), time.Since(demoStart).Round(time.Second))
	fmt.Printf("The plan, its journal, its audit log and the etcd snapshot are in %s.\n", work)
	if o.keep {
		fmt.Printf("\nThe lab is still up. Get in:\n")
		fmt.Printf("  go run ./testenv/cmd/lab exec --name %s m1 -- bash\n", o.name)
		fmt.Printf("  ip netns exec %s ssh -i %s -o UserKnownHostsFile=%s root@10.88.0.11\n", netns, lab.SSHKey, lab.KnownHosts)
		fmt.Printf("  ip netns exec %s %s -i %s ...\n", netns, o.bin, lab.Inventory)
		fmt.Printf("Tear it down: go run ./testenv/cmd/lab down --name %s\n", o.name)
	}
	return nil
}

// up brings the lab up with its log in a file, printing one line every 10 s meanwhile.
func up(ctx context.Context, name string) (*testenv.Lab, error) {
	logPath := filepath.Join(os.TempDir(), "mastershrink-demo-lab-"+name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	start := time.Now()
	stop := heartbeat.Start(ctx, 10*time.Second, func(elapsed time.Duration) {
		fmt.Printf("  %sstill bringing the lab up [%s elapsed] (first run builds the rootfs)%s\n", dim, elapsed.Round(time.Second), reset)
	})
	lab, err := testenv.Up(ctx, testenv.Options{Name: name, Log: logf})
	stop()
	if err != nil {
		return nil, fmt.Errorf("lab up: %w (log: %s)", err, logPath)
	}
	fmt.Printf("Lab %q up in %s: etcd %s, Kubernetes %s, nginx stream proxy on every node.\n",
		name, time.Since(start).Round(100*time.Millisecond), lab.EtcdVersion, lab.KubernetesVersion)
	for _, m := range lab.Machines {
		fmt.Printf("  %-3s %-11s %s\n", m.Name, m.Address, strings.Join(m.Roles, ", "))
	}
	fmt.Printf("%s(lab log: %s)%s\n", dim, logPath, reset)
	return lab, nil
}

func kubeClient(lab *testenv.Lab) (kubernetes.Interface, error) {
	cfg, err := lab.RESTConfig("")
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(cfg)
}

func load(ctx context.Context, lab *testenv.Lab, kube kubernetes.Interface) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	ec, err := lab.EtcdClient()
	if err != nil {
		return err
	}
	defer ec.Close()
	if err := seed.WriteKeys(ctx, ec, "/demo/", seedKeys); err != nil {
		return err
	}
	fmt.Printf("Wrote %d keys under /demo/ (checked again after the shrink).\n", seedKeys)
	if err := seed.EnsureNamespace(ctx, kube, "web"); err != nil {
		return err
	}
	if err := seed.CreateDeployment(ctx, kube, "web", "web", 4, []string{"w1", "w2"}, false); err != nil {
		return err
	}
	if err := seed.WaitPodsRunning(ctx, kube, "web", 4); err != nil {
		return err
	}
	fmt.Printf("Deployment web/web: 4 pods over w1 and w2 (the drain of w2 moves its pods to w1).\n")
	return nil
}

func cmdline(netns, bin string, args ...string) {
	fmt.Printf("%s$ ip netns exec %s %s %s%s\n\n", dim, netns, relative(bin), strings.Join(args, " "), reset)
}

func relative(p string) string {
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
	}
	return p
}

// mastershrink runs the binary inside the lab's network namespace, as an operator on a
// machine of that network would, with its output indented under the heading.
func mastershrink(ctx context.Context, netns, bin string, lab *testenv.Lab, args ...string) error {
	c := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netns, bin}, args...)...)
	c.Dir = filepath.Dir(lab.Inventory)
	pr, pw := io.Pipe()
	c.Stdout, c.Stderr = pw, pw
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Printf("  %s\n", sc.Text())
		}
	}()
	err := c.Run()
	pw.Close()
	wg.Wait()
	return err
}

// show prints the etcd members, the nodes, each node's proxy upstream and the SANs of the
// certificates the plan re-signs.
func show(ctx context.Context, lab *testenv.Lab, kube kubernetes.Interface) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Printf("%setcd members%s\n", bold, reset)
	if err := etcdTable(ctx, lab, tw); err != nil {
		fmt.Printf("  (etcd: %v)\n", err)
	}
	tw.Flush()

	fmt.Printf("\n%sKubernetes nodes%s\n", bold, reset)
	if list, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		fmt.Printf("  (nodes: %v)\n", err)
	} else {
		fmt.Fprintf(tw, "  NAME\tSTATUS\tPODS\n")
		for _, n := range list.Items {
			status := "NotReady"
			for _, c := range n.Status.Conditions {
				if c.Type == "Ready" && c.Status == "True" {
					status = "Ready"
				}
			}
			if n.Spec.Unschedulable {
				status += ",SchedulingDisabled"
			}
			pods, _ := kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name})
			count := 0
			if pods != nil {
				count = len(pods.Items)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\n", n.Name, status, count)
		}
		tw.Flush()
	}
	if slices, err := kube.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=kubernetes"}); err == nil {
		var addrs []string
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				addrs = append(addrs, e.Addresses...)
			}
		}
		sort.Strings(addrs)
		fmt.Printf("  service kubernetes endpoints: %s\n", strings.Join(addrs, ", "))
	}

	fmt.Printf("\n%sapiserver proxy on each node%s (nginx stream upstream)\n", bold, reset)
	for _, m := range lab.Machines {
		out, err := lab.Exec(ctx, m.Name, "sh", "-c", "grep -E '^[[:space:]]*server [0-9]' /approot/data/k8s/kube-nginx/kube-nginx.conf /etc/kube-lb/conf/kube-lb.conf 2>/dev/null | sed 's/^[^:]*://'")
		if err != nil {
			fmt.Printf("  %-3s (%v)\n", m.Name, err)
			continue
		}
		var parts []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(strings.TrimSuffix(strings.TrimSpace(l), ";"))
			if len(f) < 2 {
				continue
			}
			s := f[1]
			if f[len(f)-1] == "down" {
				s = dim + s + " (down)" + reset
			}
			parts = append(parts, s)
		}
		state := ""
		if st, err := lab.Exec(ctx, m.Name, "sh", "-c", "systemctl is-active kube-nginx kube-lb 2>/dev/null | grep -qx active || echo stopped"); err == nil && strings.TrimSpace(string(st)) == "stopped" {
			// A leaving master's proxy is stopped by the shrink: its config no longer matters.
			state = dim + "  (proxy stopped and disabled)" + reset
		}
		fmt.Printf("  %-3s %s%s\n", m.Name, strings.Join(parts, "  "), state)
	}

	fmt.Printf("\n%scertificate SANs on m1%s\n", bold, reset)
	for _, cert := range []string{"etcd.pem", "kubernetes.pem"} {
		out, err := lab.Exec(ctx, "m1", "openssl", "x509", "-noout", "-serial", "-ext", "subjectAltName", "-in", "/etc/kubernetes/ssl/"+cert)
		if err != nil {
			fmt.Printf("  %s: %v\n", cert, err)
			continue
		}
		var serial, sans string
		for _, l := range strings.Split(string(out), "\n") {
			l = strings.TrimSpace(l)
			switch {
			case strings.HasPrefix(l, "serial="):
				serial = strings.TrimPrefix(l, "serial=")
			case strings.HasPrefix(l, "DNS:") || strings.HasPrefix(l, "IP Address:"):
				sans = strings.NewReplacer("IP Address:", "", "DNS:", "").Replace(l)
			}
		}
		fmt.Printf("  %-15s serial %s…\n  %-15s %s\n", cert, serial[:min(12, len(serial))], "", sans)
	}
}

func etcdTable(ctx context.Context, lab *testenv.Lab, tw *tabwriter.Writer) error {
	var ec *clientv3.Client
	var list *clientv3.MemberListResponse
	var err error
	// Ask the members that still answer (after the shrink only m1 does).
	for _, ep := range lab.EtcdEndpoints() {
		if ec, err = lab.EtcdClient(ep); err != nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		list, err = ec.MemberList(rctx)
		cancel()
		if err == nil {
			break
		}
		ec.Close()
		ec = nil
	}
	if ec == nil {
		return err
	}
	defer ec.Close()
	fmt.Fprintf(tw, "  ID\tNAME\tCLIENT URL\tLEADER\tDB SIZE\n")
	for _, m := range list.Members {
		leader, size := "", "-"
		if len(m.ClientURLs) > 0 {
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			st, err := ec.Status(rctx, m.ClientURLs[0])
			cancel()
			if err == nil {
				size = fmt.Sprintf("%.1f MB", float64(st.DbSize)/1e6)
				if st.Leader == m.ID {
					leader = "*"
				}
			}
		}
		url := ""
		if len(m.ClientURLs) > 0 {
			url = m.ClientURLs[0]
		}
		fmt.Fprintf(tw, "  %x\t%s\t%s\t%s\t%s\n", m.ID, m.Name, url, leader, size)
	}
	return nil
}
