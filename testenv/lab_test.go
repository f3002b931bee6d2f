package testenv

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestLab is the lab's acceptance check (issue 2): a 3-master, 2-worker lab comes up whole and
// goes away without a trace.
func TestLab(t *testing.T) {
	checkLab(t, Options{Name: "mstest"})
}

// TestLabKubeasz checks the kubeasz layout with Debian's etcd 3.4 (MASTERSHRINK_LAB_ALL=1; it
// costs another lab start).
func TestLabKubeasz(t *testing.T) {
	if os.Getenv("MASTERSHRINK_LAB_ALL") != "1" {
		t.Skip("set MASTERSHRINK_LAB_ALL=1 to check the kubeasz layout too")
	}
	checkLab(t, Options{Name: "mstestk", Layout: "kubeasz", EtcdVersion: "3.4.23"})
}

// TestLabOtherVersions checks the older Kubernetes and etcd 3.6 (MASTERSHRINK_LAB_ALL=1).
func TestLabOtherVersions(t *testing.T) {
	if os.Getenv("MASTERSHRINK_LAB_ALL") != "1" {
		t.Skip("set MASTERSHRINK_LAB_ALL=1 to check Kubernetes v1.34.4 with etcd v3.6.16 too")
	}
	checkLab(t, Options{Name: "mstestv", KubernetesVersion: "v1.34.4", EtcdVersion: "v3.6.16"})
}

func checkLab(t *testing.T, opts Options) {
	RequireLab(t)
	l := StartLab(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lay, _ := LookupLayout(l.Layout)

	t.Run("etcd", func(t *testing.T) {
		c, err := l.EtcdClient()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		members, err := c.MemberList(ctx)
		if err != nil {
			t.Fatalf("member list: %v", err)
		}
		if len(members.Members) != l.Masters {
			t.Fatalf("etcd has %d members, want %d", len(members.Members), l.Masters)
		}
		leaders := 0
		for _, ep := range l.EtcdEndpoints() {
			st, err := c.Status(ctx, ep)
			if err != nil {
				t.Fatalf("status %s: %v", ep, err)
			}
			if len(st.Errors) > 0 {
				t.Errorf("member %s reports errors %v", ep, st.Errors)
			}
			if want := strings.TrimPrefix(l.EtcdVersion, "v"); st.Version != want {
				t.Errorf("member %s runs etcd %s, want %s", ep, st.Version, want)
			}
			if st.Header.MemberId == st.Leader {
				leaders++
			}
		}
		if leaders != 1 {
			t.Errorf("%d members think they lead, want 1", leaders)
		}
	})

	t.Run("apiservers", func(t *testing.T) {
		hcV, err := l.HTTPClient(l.DialContext)
		if err != nil {
			t.Fatal(err)
		}
		if code, body, err := get(ctx, hcV, l.APIServerURLs()[0]+"/version"); err != nil || !strings.Contains(body, `"gitVersion": "`+l.KubernetesVersion+`"`) {
			t.Errorf("apiserver /version: %d %v %s, want %s", code, err, body, l.KubernetesVersion)
		}
		hc, err := l.HTTPClient(l.DialContext)
		if err != nil {
			t.Fatal(err)
		}
		urls := l.APIServerURLs()
		if len(urls) != l.Masters {
			t.Fatalf("%d apiserver URLs, want %d", len(urls), l.Masters)
		}
		for _, u := range urls {
			code, body, err := get(ctx, hc, u+"/readyz")
			if err != nil || code != 200 {
				t.Errorf("%s/readyz: %d %v %s", u, code, err, body)
			}
		}
	})

	t.Run("nodes", func(t *testing.T) {
		cfg, err := l.RESTConfig("")
		if err != nil {
			t.Fatal(err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("list nodes: %v", err)
		}
		ready := map[string]bool{}
		for _, n := range nodes.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready[n.Name] = true
				}
			}
		}
		for _, m := range l.Machines {
			if l.hasRole(m, "worker") && !ready[m.Name] {
				t.Errorf("node %s not Ready (nodes: %d)", m.Name, len(nodes.Items))
			}
		}
	})

	t.Run("kubectl-through-worker-proxy", func(t *testing.T) {
		w := "w1"
		out, err := l.Exec(ctx, w, "kubectl", "get", "nodes", "-o", "name")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"node/w1", "node/w2"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("kubectl get nodes on %s: %q lacks %s", w, out, want)
			}
		}
		// The machine's kubeconfig names its local proxy, so the request went through nginx.
		cfg, err := l.Exec(ctx, w, "kubectl", "config", "view", "-o", "jsonpath={.clusters[0].cluster.server}")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.TrimSpace(string(cfg)), "https://"+lay.Paths.NginxListen; got != want {
			t.Errorf("kubectl on %s talks to %s, want its local proxy %s", w, got, want)
		}
		// And in-process, from the worker's namespace to its proxy.
		wm, _ := l.Machine(w)
		hc, err := l.HTTPClient(DialerIn(wm.NetNS))
		if err != nil {
			t.Fatal(err)
		}
		code, body, err := get(ctx, hc, "https://"+lay.Paths.NginxListen+"/api/v1/nodes/"+w)
		if err != nil || code != 200 {
			t.Errorf("GET node through %s's proxy: %d %v %s", w, code, err, body)
		}
		wcfg, err := l.WorkerRESTConfig(w)
		if err != nil {
			t.Fatal(err)
		}
		wcs, err := kubernetes.NewForConfig(wcfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := wcs.CoreV1().Nodes().Get(ctx, "w2", metav1.GetOptions{}); err != nil {
			t.Errorf("client-go through %s's proxy: %v", w, err)
		}
	})

	t.Run("ssh", func(t *testing.T) {
		hostKeys, err := knownhosts.New(l.KnownHosts)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := os.ReadFile(l.SSHKey)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := ssh.ParsePrivateKey(keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range l.Machines {
			conn, err := l.DialContext(ctx, "tcp", m.Address+":22")
			if err != nil {
				t.Fatalf("dial %s: %v", m.Name, err)
			}
			cc, chans, reqs, err := ssh.NewClientConn(conn, m.Address+":22", &ssh.ClientConfig{
				User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hostKeys, Timeout: 10 * time.Second,
			})
			if err != nil {
				conn.Close()
				t.Errorf("ssh %s: %v", m.Name, err)
				continue
			}
			c := ssh.NewClient(cc, chans, reqs)
			sess, err := c.NewSession()
			if err != nil {
				t.Fatalf("ssh session %s: %v", m.Name, err)
			}
			out, err := sess.Output("hostname")
			c.Close()
			if err != nil || strings.TrimSpace(string(out)) != m.Name {
				t.Errorf("ssh %s hostname: %q %v", m.Name, out, err)
			}
		}
		// Host-key checking is on: a machine presenting another machine's key is refused.
		conn, err := l.DialContext(ctx, "tcp", l.Machines[1].Address+":22")
		if err != nil {
			t.Fatal(err)
		}
		_, _, _, err = ssh.NewClientConn(conn, l.Machines[0].Address+":22", &ssh.ClientConfig{
			User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hostKeys, Timeout: 10 * time.Second,
		})
		conn.Close()
		if err == nil {
			t.Errorf("ssh accepted %s's host key for %s", l.Machines[1].Name, l.Machines[0].Name)
		}
	})

	t.Run("prober", func(t *testing.T) {
		p := l.StartProber(ctx, 20)
		deadline := time.Now().Add(30 * time.Second)
		for len(p.Probes()) < 40 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		r := p.Stop()
		t.Logf("prober: %s", r)
		if r.Total < 40 {
			t.Errorf("prober made %d probes, want at least 40", r.Total)
		}
		if r.Failed > 0 {
			t.Errorf("prober: %d of %d failed: first %+v", r.Failed, r.Total, r.Failures[0])
		}
		for _, m := range l.Machines {
			if l.hasRole(m, "worker") && r.PerWorker[m.Name].Total == 0 {
				t.Errorf("no probes from %s", m.Name)
			}
		}
	})

	t.Run("down-leaves-nothing", func(t *testing.T) {
		var pids []int
		for _, m := range l.Machines {
			pids = append(pids, m.PID, m.NspawnPID)
		}
		if err := l.Down(context.Background()); err != nil {
			t.Fatalf("down: %v", err)
		}
		if left := Leftovers(l.Name); len(left) > 0 {
			t.Errorf("left after down: %v", left)
		}
		for _, pid := range pids {
			if alive(pid) {
				t.Errorf("process %d (%s) still alive", pid, comm(pid))
			}
		}
		for _, m := range l.Machines {
			if _, err := os.Stat(m.NetNS); err == nil {
				t.Errorf("netns %s still there", m.NetNS)
			}
		}
		if _, err := os.Stat(l.Inventory); err == nil {
			t.Errorf("inventory %s still there", l.Inventory)
		}
	})
}
