package kubetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Versions of the binaries the environment runs (built by testenv/scripts/build-binaries.sh).
const (
	EtcdVersion       = "v3.5.21"
	KubernetesVersion = "v1.37.0"
	KwokVersion       = "v0.8.0"
)

// Options shape the environment.
type Options struct {
	// Nodes are the names of the fake nodes, each run by its own kwok.
	Nodes []string
	// PodsPerNode is each node's pod capacity (allocatable pods); 0 means 110, the kubelet's default.
	PodsPerNode int
}

// Env is a running control plane with kwok nodes.
type Env struct {
	Kubeconfig string
	Client     kubernetes.Interface
	RestConfig *rest.Config
	// Kubectl is the path of the kubectl binary of the same Kubernetes version.
	Kubectl string
	// Dir holds certificates, data and the components' logs.
	Dir string

	t    testing.TB
	bins binaries
	mu   sync.Mutex
	kwok map[string]*proc
	all  []*proc
}

type binaries struct{ etcd, kube, kwok string }

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// Start brings up etcd, kube-apiserver, kube-controller-manager, kube-scheduler and one kwok
// per node, waits until every node is Ready, and registers a cleanup that kills them all.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	bins, err := findBinaries(t)
	if err != nil {
		t.Fatalf("kubetest binaries: %v", err)
	}
	dir := t.TempDir()
	e := &Env{Dir: dir, t: t, bins: bins, kwok: map[string]*proc{}, Kubectl: filepath.Join(bins.kube, "kubectl")}
	t.Cleanup(e.stopAll)
	if err := e.start(opts); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return e
}

func (e *Env) start(opts Options) error {
	p, err := generatePKI(e.Dir)
	if err != nil {
		return fmt.Errorf("generate pki: %w", err)
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	if err := e.spawn("etcd", filepath.Join(e.bins.etcd, "etcd"),
		"--name=kubetest", "--data-dir="+filepath.Join(e.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL, "--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return err
	}
	if err := pollHTTP(etcdURL+"/health", 30*time.Second); err != nil {
		return fmt.Errorf("etcd: %w%s", err, e.tail("etcd"))
	}
	apiPort := ports[2]
	kube := func(c string) string { return filepath.Join(e.bins.kube, c) }
	if err := e.spawn("kube-apiserver", kube("kube-apiserver"),
		"--etcd-servers="+etcdURL, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--tls-cert-file="+p.ServingCert, "--tls-private-key-file="+p.ServingKey, "--client-ca-file="+p.CACert,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+p.SAPub, "--service-account-signing-key-file="+p.SAKey,
		"--service-cluster-ip-range=10.96.0.0/16", "--authorization-mode=RBAC",
		// Pods would wait for the default ServiceAccount; fake pods need no token.
		"--disable-admission-plugins=ServiceAccount",
		// The loopback advertise address is refused by the lease reconciler; no Service needed.
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false", "--profiling=false",
		"--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000"); err != nil {
		return err
	}
	e.Kubeconfig = filepath.Join(e.Dir, "admin.kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority: %s
users:
- name: admin
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: kubetest
  context: {cluster: kubetest, user: admin}
current-context: kubetest
`, apiPort, p.CACert, p.AdminCert, p.AdminKey)
	if err := os.WriteFile(e.Kubeconfig, []byte(kc), 0o600); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", e.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	e.RestConfig = cfg
	e.Client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := e.waitReadyz(60 * time.Second); err != nil {
		return fmt.Errorf("kube-apiserver: %w%s", err, e.tail("kube-apiserver"))
	}
	if err := e.spawn("kube-controller-manager", kube("kube-controller-manager"),
		"--kubeconfig="+e.Kubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0",
		"--service-account-private-key-file="+p.SAKey, "--root-ca-file="+p.CACert,
		"--controllers=*", "--use-service-account-credentials=false",
		"--kube-api-qps=200", "--kube-api-burst=400",
		"--node-monitor-period=1s", "--node-monitor-grace-period=10s",
		"--concurrent-replicaset-syncs=10", "--concurrent-deployment-syncs=10"); err != nil {
		return err
	}
	if err := e.spawn("kube-scheduler", kube("kube-scheduler"),
		"--kubeconfig="+e.Kubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0",
		"--authentication-kubeconfig="+e.Kubeconfig, "--authorization-kubeconfig="+e.Kubeconfig,
		"--kube-api-qps=200", "--kube-api-burst=400"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, n := range opts.Nodes {
		if err := e.createNode(ctx, n, opts.PodsPerNode); err != nil {
			return err
		}
	}
	for i, n := range opts.Nodes {
		if err := e.startKwok(n, i); err != nil {
			return err
		}
	}
	for _, n := range opts.Nodes {
		if err := e.waitNodeReady(ctx, n, true); err != nil {
			return fmt.Errorf("node %s: %w%s", n, err, e.tail("kwok-"+n))
		}
	}
	return nil
}

func (e *Env) createNode(ctx context.Context, name string, pods int) error {
	if pods == 0 {
		pods = 110
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: name,
		Labels: map[string]string{
			"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok",
		},
		Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
	}}
	created, err := e.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   *resource.NewQuantity(int64(pods), resource.DecimalSI),
	}
	created.Status.Capacity, created.Status.Allocatable = res, res
	if _, err := e.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set capacity of node %s: %w", name, err)
	}
	return nil
}

func (e *Env) startKwok(node string, i int) error {
	return e.spawn("kwok-"+node, filepath.Join(e.bins.kwok, "kwok"),
		"--kubeconfig="+e.Kubeconfig, "--manage-single-node="+node,
		"--config="+filepath.Join(e.bins.kwok, "stages.yaml"),
		// Short leases so a stopped node is noticed (and confirmed down) within seconds.
		"--node-lease-duration-seconds=10",
		fmt.Sprintf("--cidr=10.%d.0.0/16", 100+i), fmt.Sprintf("--node-ip=10.0.%d.1", i+1))
}

// StopNode kills the node's kwok, as if its kubelet died, and waits until the
// controller-manager marks the Node NotReady.
func (e *Env) StopNode(name string) error {
	e.mu.Lock()
	p := e.kwok[name]
	delete(e.kwok, name)
	e.mu.Unlock()
	if p == nil {
		return fmt.Errorf("node %s has no running kwok", name)
	}
	p.kill()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return e.waitNodeReady(ctx, name, false)
}

func (e *Env) waitNodeReady(ctx context.Context, name string, want bool) error {
	for {
		n, err := e.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil && nodeReady(n) == want {
			return nil
		}
		if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for node %s ready=%v: %w", name, want, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (e *Env) waitReadyz(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last error
	for {
		_, err := e.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil {
			return nil
		}
		last = err
		if e.exited("kube-apiserver") {
			return errors.New("kube-apiserver exited")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("readyz: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (e *Env) spawn(name, bin string, args ...string) error {
	logPath := filepath.Join(e.Dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// The components die with the test binary even if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	e.mu.Lock()
	e.all = append(e.all, p)
	if strings.HasPrefix(name, "kwok-") {
		e.kwok[strings.TrimPrefix(name, "kwok-")] = p
	}
	e.mu.Unlock()
	return nil
}

func (e *Env) exited(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.all {
		if p.name == name {
			select {
			case <-p.done:
				return true
			default:
			}
		}
	}
	return false
}

func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func (e *Env) stopAll() {
	e.mu.Lock()
	all := e.all
	e.mu.Unlock()
	if e.t.Failed() {
		for _, p := range all {
			e.t.Logf("%s", e.tail(p.name))
		}
	}
	for i := len(all) - 1; i >= 0; i-- {
		all[i].kill()
	}
}

// tail returns the end of a component's log, for error messages.
func (e *Env) tail(name string) string {
	f, err := os.Open(filepath.Join(e.Dir, name+".log"))
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 12 {
			lines = lines[1:]
		}
	}
	return "\n--- " + name + " log (last lines) ---\n" + strings.Join(lines, "\n")
}

func pollHTTP(url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// findBinaries locates the cached builds, waiting for a build still in progress and starting
// the build script for a component that was never built.
func findBinaries(t testing.TB) (binaries, error) {
	cache := os.Getenv("MASTERSHRINK_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return binaries{}, err
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "mastershrink")
	}
	var b binaries
	for _, c := range []struct {
		dst       *string
		component string
		version   string
	}{{&b.etcd, "etcd", EtcdVersion}, {&b.kube, "kubernetes", KubernetesVersion}, {&b.kwok, "kwok", KwokVersion}} {
		dir := filepath.Join(cache, "bin", c.component+"-"+c.version)
		if err := ensureBuilt(t, dir, c.component, c.version); err != nil {
			return b, err
		}
		*c.dst = dir
	}
	return b, nil
}

func ensureBuilt(t testing.TB, dir, component, version string) error {
	complete := func() bool { _, err := os.Stat(filepath.Join(dir, ".complete")); return err == nil }
	if complete() {
		return nil
	}
	if _, err := os.Stat(dir + ".tmp"); err == nil {
		// Another process is building it: wait for it rather than racing it.
		t.Logf("waiting for the build of %s %s in %s.tmp", component, version, dir)
		deadline := time.Now().Add(30 * time.Minute)
		for !complete() {
			if time.Now().After(deadline) {
				return fmt.Errorf("build of %s %s did not complete (no %s/.complete)", component, version, dir)
			}
			time.Sleep(5 * time.Second)
		}
		return nil
	}
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "..", "scripts", "build-binaries.sh")
	t.Logf("building %s %s with %s (minutes, once per machine)", component, version, script)
	out, err := exec.Command(script, component, version).CombinedOutput()
	if err != nil {
		return fmt.Errorf("build %s %s: %w: %s", component, version, err, out)
	}
	if !complete() {
		return errors.New("build script finished without " + filepath.Join(dir, ".complete"))
	}
	return nil
}
