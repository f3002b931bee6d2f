package plan

import (
	"strings"
	"testing"
)

// A certificate a staying host's unit names but observe could not read is a warning naming
// it, who uses it and why; on a leaving host it retires with the host and is not mentioned.
func TestUnreadableCertificateWarns(t *testing.T) {
	f := seed003.facts(t)
	f.UnreadableCerts = []CertProblem{
		{Host: "m1", Path: "/opt/etcd/ssl/peer.pem", UsedBy: []string{"kube-etcd --peer-cert-file"}, Error: "/opt/etcd/ssl/peer.pem: no PEM certificate"},
		{Host: "m3", Path: "/opt/etcd/ssl/gone.pem", UsedBy: []string{"kube-etcd --client-cert-file"}, Error: "no such file or directory"},
	}
	p := Build(f, Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	if len(p.Refusals) > 0 {
		t.Fatalf("refused: %+v", p.Refusals)
	}
	var hits []string
	for _, w := range p.Warnings {
		if strings.Contains(w, "could not be read") {
			hits = append(hits, w)
		}
	}
	if len(hits) != 1 || !strings.Contains(hits[0], "m1:/opt/etcd/ssl/peer.pem") ||
		!strings.Contains(hits[0], "kube-etcd --peer-cert-file") || !strings.Contains(hits[0], "no PEM certificate") {
		t.Errorf("warnings %q, want one naming m1:/opt/etcd/ssl/peer.pem, its user and the error", p.Warnings)
	}
}
