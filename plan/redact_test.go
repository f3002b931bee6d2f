package plan

import (
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/host"
)

const kubeconfigWithKey = `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EK
    server: https://10.0.0.12:6443
  name: kubernetes
users:
- name: system:kube-controller-manager
  user:
    client-certificate-data: Q0VSVAo=
    client-key-data: U0VDUkVUS0VZCg==
    token: abcdef.0123456789abcdef
`

const envWithSecrets = `KUBE_APISERVER_OPTS="--etcd-servers=https://10.0.0.11:2379 --token-auth-file=/etc/kubernetes/token.csv"
ETCD_INITIAL_CLUSTER_TOKEN=etcd-cluster-0
ETCD_KEY_FILE=/etc/etcd/ssl/etcd-key.pem
export REGISTRY_PASSWORD='hunter2'
`

const pemKey = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabcdef\n-----END RSA PRIVATE KEY-----\n"

func TestRedactAndRestore(t *testing.T) {
	for _, tc := range []struct {
		name, in   string
		gone, kept []string
	}{
		{"kubeconfig", kubeconfigWithKey, []string{"U0VDUkVUS0VZCg==", "abcdef.0123456789abcdef"}, []string{"server: https://10.0.0.12:6443", "client-certificate-data: Q0VSVAo="}},
		{"environment file", envWithSecrets, []string{"hunter2"}, []string{"--token-auth-file=/etc/kubernetes/token.csv", "ETCD_INITIAL_CLUSTER_TOKEN=etcd-cluster-0", "ETCD_KEY_FILE=/etc/etcd/ssl/etcd-key.pem"}},
		{"private key", "before\n" + pemKey + "after\n", []string{"MIIEowIBAAKCAQEA", "abcdef"}, []string{"-----BEGIN RSA PRIVATE KEY-----", "after"}},
		{"command line", "ExecStart=/bin/kube-apiserver --token=s3cr3t --token-auth-file=/x.csv", []string{"s3cr3t"}, []string{"--token-auth-file=/x.csv"}},
	} {
		r := Redact(tc.in)
		for _, g := range tc.gone {
			if strings.Contains(r, g) {
				t.Errorf("%s: %q left in:\n%s", tc.name, g, r)
			}
		}
		for _, k := range tc.kept {
			if !strings.Contains(r, k) {
				t.Errorf("%s: %q redacted, though not secret:\n%s", tc.name, k, r)
			}
		}
		if Redact(r) != r {
			t.Errorf("%s: redacting twice changes the text", tc.name)
		}
		back, err := Restore(r, tc.in)
		if err != nil || back != tc.in {
			t.Errorf("%s: Restore = %q, %v; want the original", tc.name, back, err)
		}
	}
	// The rewrite a plan carries: the server changes, the key stays; restored from the live file.
	after := strings.Replace(kubeconfigWithKey, "10.0.0.12", "10.0.0.11", 1)
	got, err := Restore(Redact(after), kubeconfigWithKey)
	if err != nil || got != after {
		t.Errorf("restore the rewrite from the live file: %v\n%s", err, got)
	}
	// A key changed on the host since the plan: refused, never written with a wrong value.
	changed := strings.Replace(kubeconfigWithKey, "U0VDUkVUS0VZCg==", "T1RIRVIK", 1)
	if _, err := Restore(Redact(after), changed); err == nil {
		t.Error("restore with a key changed since the plan succeeded")
	}
}

func TestRedactedPlanHoldsNoSecret(t *testing.T) {
	p := Build(seed003.facts(t), Target{Remove: []string{"m3"}}, "test", observedAt)
	p.Steps[2].Files = append(p.Steps[2].Files, host.FileChange{Host: "m1", Path: "/etc/kubernetes/kube-controller-manager.kubeconfig",
		Before: kubeconfigWithKey, After: strings.Replace(kubeconfigWithKey, "10.0.0.12", "10.0.0.11", 1)})
	data, err := Encode(Redacted(p))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"U0VDUkVUS0VZCg==", "abcdef.0123456789abcdef"} {
		if strings.Contains(string(data), secret) {
			t.Errorf("plan file holds %q", secret)
		}
	}
	if p.Steps[2].Files[len(p.Steps[2].Files)-1].Before != kubeconfigWithKey {
		t.Error("Redacted changed the plan it was given")
	}
}
