package runner

import (
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/plan"
)

// kubernetesSlice is the default/kubernetes EndpointSlice listing addrs.
func kubernetesSlice(addrs ...string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kubernetes",
		Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: addrs}}}
}

// verify/final: refuses while a leaving member is still in etcd; once it is removed, passes
// with the proxies answering and the endpoints on the survivors, and warns about files that
// still name the removed address and the keys the leaving host still holds.
func TestExecutorVerify(t *testing.T) {
	t.Parallel() // its own etcd and fakes
	w := newShrinkWorld(t)
	w.fc.kube = fakeAPI(kubernetesSlice(w.ec.IP(0), w.ec.IP(1)))
	rm := w.removeStep("m3", w.ids["m3"], w.ec.PeerURL(2))
	del := mkStep(plan.KindDeleteNode, "w2", plan.DeleteNodeParams{Node: "w9"})
	verify := mkStep(plan.KindVerify, "", nil)
	w.p.Steps = []plan.Step{rm, del, verify}

	_, err := apply(t, w.r, verify)
	if err == nil || !strings.Contains(err.Error(), "is still a member") || !strings.Contains(err.Error(), "m3") {
		t.Fatalf("verify with m3 still a member: %v", err)
	}
	if _, err := apply(t, w.r, rm); err != nil {
		t.Fatal(err)
	}
	w.fc.hosts["w1"].RunFunc = nginxShell(w.fc.hosts["w1"], nil, on("grep -rlsIE", stdout("/etc/kubernetes/kubelet.conf\n"+nginxConfPath+"\n")))
	w.fc.hosts["m3"].SetFile("/etc/kubernetes/ssl/etcd-key.pem", "-----BEGIN EC PRIVATE KEY-----")
	w.fc.hosts["m3"].RunFunc = shell(on("grep -rlE", stdout("/etc/kubernetes/ssl/etcd-key.pem\n")))
	w.p.Steps = append(w.p.Steps, mkStep(plan.KindLBUpdate, "w1", plan.LBUpdateParams{}, host.FileChange{Host: "w1", Path: nginxConfPath}))
	out, err := apply(t, w.r, verify)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.note, "2 etcd member(s) healthy") || !strings.Contains(out.note, "through 1 proxies") {
		t.Errorf("note %q", out.note)
	}
	joined := strings.Join(out.warnings, "\n")
	if !strings.Contains(joined, "w1:/etc/kubernetes/kubelet.conf still names a removed address") || strings.Contains(joined, nginxConfPath) {
		t.Errorf("leftover warnings (the proxy config the plan rewrote is not one):\n%s", joined)
	}
	if !strings.Contains(joined, "m3 left the cluster but still holds") {
		t.Errorf("no warning of m3's keys:\n%s", joined)
	}

	// A Node the plan deletes still exists.
	w.fc.kube = fakeAPI(kubernetesSlice(w.ec.IP(0), w.ec.IP(1)))
	del.Params = plan.EncodeParams(plan.DeleteNodeParams{Node: "w2"})
	w.p.Steps[1] = del
	if _, err := apply(t, w.r, verify); err == nil || !strings.Contains(err.Error(), "Node w2 still exists") {
		t.Errorf("verify with the Node left: %v", err)
	}
}
