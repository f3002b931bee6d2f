package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/testenv"
	"github.com/mastershrink/mastershrink/testenv/seed"
)

// planLab runs `mastershrink plan -i INVENTORY ARGS --out PATH` against the lab and returns
// what it printed and the plan it wrote; any exit but 0 ends the test.
func planLab(t *testing.T, lab *testenv.Lab, path string, args ...string) (string, *plan.Plan) {
	t.Helper()
	args = append(append([]string{"plan", "-i", lab.Inventory}, args...), "--out", path)
	out, errOut, code := cli(t, lab, args...)
	if code != exitOK {
		t.Fatalf("plan exit %d\n%s\n%s", code, errOut, out)
	}
	return out, readPlan(t, path)
}

func readPlan(t *testing.T, path string) *plan.Plan {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Decode(data, "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// applyProbed applies the plan at path while the prober sends requests from every worker:
// a shrink must not fail one. Apply's output is logged, and returned for further checks.
func applyProbed(t *testing.T, lab *testenv.Lab, path string) (string, string) {
	t.Helper()
	prober := lab.StartProber(context.Background(), 20)
	start := time.Now()
	out, errOut, code := cli(t, lab, "apply", path, "-i", lab.Inventory)
	report := prober.Stop()
	t.Logf("apply took %s; prober: %s\n%s%s", time.Since(start).Round(time.Second), report, errOut, out)
	if code != exitOK {
		t.Fatalf("apply exit %d", code)
	}
	checkProbes(t, report)
	return out, errOut
}

// checkProbes fails the test when any probe failed, naming the first few.
func checkProbes(t *testing.T, report testenv.ProbeReport) {
	t.Helper()
	if report.Failed > 0 {
		t.Errorf("prober: %d of %d requests failed: %v", report.Failed, report.Total, report.Failures[:min(5, len(report.Failures))])
	}
}

// labEtcd returns a client of the lab's etcd at endpoints (every member when none given).
func labEtcd(t *testing.T, lab *testenv.Lab, endpoints ...string) *clientv3.Client {
	t.Helper()
	ec, err := lab.EtcdClient(endpoints...)
	if err != nil {
		t.Fatal(err)
	}
	return ec
}

// m1EtcdAfterShrink checks that m1's etcd, the one every shrink keeps, still holds every seed
// key, and returns its members' names, sorted, for the caller to compare with its layout's.
func m1EtcdAfterShrink(ctx context.Context, t *testing.T, lab *testenv.Lab) []string {
	t.Helper()
	m1, _ := lab.Machine("m1")
	ec := labEtcd(t, lab, "https://"+m1.Address+":2379")
	defer ec.Close()
	if err := seed.CheckKeys(ctx, ec, "/seed/", seedKeys); err != nil {
		t.Errorf("seed keys: %v", err)
	}
	members, err := ec.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range members.Members {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names
}

// m1CertsNameOnlyM1 checks, after a 3-to-1 shrink to m1, that the certificates m1 serves
// name m1 and neither removed master.
func m1CertsNameOnlyM1(ctx context.Context, t *testing.T, lab *testenv.Lab, certs ...string) {
	t.Helper()
	m1, _ := lab.Machine("m1")
	m2, _ := lab.Machine("m2")
	m3, _ := lab.Machine("m3")
	for _, cert := range certs {
		out, err := lab.Exec(ctx, "m1", "openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", cert)
		if err != nil {
			t.Fatalf("%s: %v", cert, err)
		}
		if s := string(out); strings.Contains(s, m2.Address) || strings.Contains(s, m3.Address) || !strings.Contains(s, m1.Address) {
			t.Errorf("%s SANs: %s, want m1 and no removed master", cert, s)
		}
	}
}

// startVIPLab starts a seeded lab of opts with keepalived's VIP in front of the API, and
// returns it, a context that ends with the test, and a kubeconfig pointing at the VIP.
func startVIPLab(t *testing.T, opts testenv.Options) (*testenv.Lab, context.Context, string) {
	t.Helper()
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, opts)
	prepare(t, lab)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	kc, err := lab.AddVIP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return lab, ctx, kc
}
