package plan

import (
	"encoding/json"
	"errors"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/etcd"
)

func refusalCodes(p *Plan) []string {
	var out []string
	for _, r := range p.Refusals {
		out = append(out, r.Code)
	}
	return out
}

// Member names swapped between m2 and m3 (each restarted with the other's --name): removing
// m2 must never remove the member at m3's address.
func TestIdentitySwappedNamesRefused(t *testing.T) {
	f := seed003.facts(t)
	f.Etcd.Members[1].Name, f.Etcd.Members[2].Name = f.Etcd.Members[2].Name, f.Etcd.Members[1].Name
	p := Build(f, Target{Remove: []string{"m2"}}, "test", observedAt)
	if !slices.Contains(refusalCodes(p), "etcd-identity-conflict") || len(p.Steps) != 0 {
		t.Fatalf("swapped names: refusals %v, steps %v; want etcd-identity-conflict and no step", p.Refusals, ids(p))
	}
	named := false
	for _, r := range p.Refusals {
		named = named || (strings.Contains(r.Reason, "peer address of m2") && strings.Contains(r.Reason, "name is that of m3"))
	}
	if !named {
		t.Errorf("no refusal names the conflict on m2: %v", p.Refusals)
	}
}

// Members named otherwise than the inventory (etcd-1, ...), in another order: mapped by address.
func TestIdentityByAddressNotName(t *testing.T) {
	f := seed003.facts(t)
	for i := range f.Etcd.Members {
		f.Etcd.Members[i].Name = []string{"etcd-c", "etcd-a", "etcd-b"}[i]
	}
	p := Build(f, Target{Remove: []string{"m2"}}, "test", observedAt)
	if len(p.Refusals) > 0 {
		t.Fatalf("refused: %v", p.Refusals)
	}
	st, ok := p.Step("etcd/remove-member/m2")
	if !ok || st.Params["member"] != "etcd-a" || st.Params["peer_urls"] != "https://"+masterIP(2)+":2380" {
		t.Fatalf("removal of m2: %+v, want member etcd-a at m2's peer URL", st)
	}
}

// Peer URLs by host name: resolved the way the hosts resolve them; unresolvable is a refusal
// naming the member, never a silent "no removal".
func TestIdentityPeerURLsByName(t *testing.T) {
	f := seed003.facts(t)
	f.Resolved = map[string][]string{}
	for i := range f.Etcd.Members {
		name := []string{"etcd1.lan", "etcd2.lan", "etcd3.lan"}[i]
		f.Etcd.Members[i].PeerURLs = []string{"https://" + name + ":2380"}
		f.Resolved[name] = []string{masterIP(i + 1)}
	}
	p := Build(f, Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	if len(p.Refusals) > 0 {
		t.Fatalf("refused: %v", p.Refusals)
	}
	for _, id := range []string{"etcd/remove-member/m2", "etcd/stop/m2", "etcd/remove-member/m3", "etcd/stop/m3"} {
		if _, ok := p.Step(id); !ok {
			t.Errorf("plan lacks %s: %v", id, ids(p))
		}
	}
	delete(f.Resolved, "etcd3.lan")
	p = Build(f, Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	if !slices.Contains(refusalCodes(p), "etcd-member-unmapped") || !strings.Contains(p.Refusals[0].Reason, "etcd3.lan does not resolve") {
		t.Errorf("unresolvable peer name: refusals %v", p.Refusals)
	}
}

// The host's own etcd says which member it is; a contradiction is refused.
func TestIdentitySelfDisagrees(t *testing.T) {
	f := seed003.facts(t)
	f.EtcdSelf = map[string]EtcdSelf{}
	for i, m := range f.Etcd.Members {
		f.EtcdSelf[[]string{"m1", "m2", "m3"}[i]] = EtcdSelf{Endpoint: m.ClientURLs[0], MemberID: etcd.FormatID(m.ID)}
	}
	if p := Build(f, Target{Remove: []string{"m2"}}, "test", observedAt); len(p.Refusals) > 0 {
		t.Fatalf("agreeing self answers refused: %v", p.Refusals)
	}
	f.EtcdSelf["m2"] = EtcdSelf{Endpoint: "https://" + masterIP(2) + ":2379", MemberID: etcd.FormatID(f.Etcd.Members[2].ID)}
	p := Build(f, Target{Remove: []string{"m2"}}, "test", observedAt)
	if !slices.Contains(refusalCodes(p), "etcd-identity-conflict") {
		t.Errorf("m2's etcd says it is m3's member: refusals %v", p.Refusals)
	}
}

func TestOfflineRefusedForLiveHost(t *testing.T) {
	p := Build(seed003.facts(t), Target{Remove: []string{"m3"}, Offline: []string{"m3"}}, "test", observedAt)
	if !slices.Contains(refusalCodes(p), "offline-reachable") {
		t.Errorf("--offline of a reachable host: refusals %v", p.Refusals)
	}
	// Unreachable over SSH but its member still healthy: it runs, so it is not offline.
	c := seed003
	c.unreachable = map[string]bool{"m3": true}
	p = Build(c.facts(t), Target{Remove: []string{"m3"}, Offline: []string{"m3"}}, "test", observedAt)
	if !slices.Contains(refusalCodes(p), "offline-member-healthy") {
		t.Errorf("--offline of a host whose member is healthy: refusals %v", p.Refusals)
	}
}

// A run that crashed between remove-member and stop: a new plan still stops that etcd.
func TestPlanAfterCrashStopsRemovedMember(t *testing.T) {
	f := seed003.facts(t)
	f.Etcd.Members = slices.Delete(f.Etcd.Members, 1, 2) // m2's member removed, its unit still enabled and active
	p := Build(f, Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	if len(p.Refusals) > 0 {
		t.Fatalf("refused: %v", p.Refusals)
	}
	st, ok := p.Step("etcd/stop/m2")
	if !ok {
		t.Fatalf("no stop for the removed member's etcd: %v", ids(p))
	}
	normal := Build(seed003.facts(t), Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	want, _ := normal.Step("etcd/stop/m2")
	if !Equal(st.Params, want.Params) {
		t.Errorf("stop params %v differ from the first plan's %v: a resumed run would refuse its own step", st.Params, want.Params)
	}
	// Stopped and disabled already: nothing left to plan for it.
	hu := f.Units["m2"]
	hu.EtcdStatus.ActiveState, hu.EtcdStatus.UnitFileState = "inactive", "disabled"
	f.Units["m2"] = hu
	if _, ok := Build(f, Target{Remove: []string{"m2", "m3"}}, "test", observedAt).Step("etcd/stop/m2"); ok {
		t.Errorf("stop planned for an etcd already stopped and disabled")
	}
}

// Facts gathered concurrently arrive in any order: one cluster, one fingerprint.
func TestFingerprintIndependentOfFactOrder(t *testing.T) {
	c := cluster{masters: 5, workers: 2, leader: 1}
	base := c.facts(t)
	want := Build(base, Target{Remove: []string{"m4", "m5"}}, "test", observedAt)
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 50; i++ {
		f := c.facts(t)
		rng.Shuffle(len(f.Certs), func(a, b int) { f.Certs[a], f.Certs[b] = f.Certs[b], f.Certs[a] })
		rng.Shuffle(len(f.Etcd.Members), func(a, b int) { f.Etcd.Members[a], f.Etcd.Members[b] = f.Etcd.Members[b], f.Etcd.Members[a] })
		if got := Build(f, Target{Remove: []string{"m5", "m4"}}, "test", observedAt); got.Fingerprint != want.Fingerprint {
			t.Fatalf("plan %d: fingerprint %s, want %s", i, got.Fingerprint, want.Fingerprint)
		}
	}
}

// Apply runs what it re-derives: an edited step (risk lowered, params changed) differs from
// the same plan derived again, even with its checksum and fingerprint left intact.
func TestPlanDiffsCatchEditedSteps(t *testing.T) {
	reviewed := Build(seed003.facts(t), Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	now := Build(seed003.facts(t), Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	if d := PlanDiffs(reviewed, now); len(d) != 0 {
		t.Fatalf("same cluster, same target: %v", d)
	}
	st, _ := reviewed.Step("etcd/remove-member/m2")
	st.Risk = Safe
	st.Params["member_id"] = "1234"
	d := PlanDiffs(reviewed, now)
	if len(d) != 2 || !strings.Contains(d[0], "irreversible") || !strings.Contains(d[1], "replaced") {
		t.Errorf("edited step: %v", d)
	}
	reviewed.Steps = reviewed.Steps[:len(reviewed.Steps)-1]
	if d := PlanDiffs(reviewed, now); !strings.Contains(strings.Join(d, "\n"), "would now have step verify/final") {
		t.Errorf("dropped step not reported: %v", d)
	}
}

// What would cut mastershrink off, or lose the cluster's CA, mid-shrink is refused at plan time.
func TestOperatorAndCAGuards(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(f *Facts)
		target Target
		code   string
	}{
		{"drain a master", func(f *Facts) {}, Target{Drain: []string{"m1"}}, "drain-control-plane"},
		{"kubeconfig on a leaving master", func(f *Facts) { f.KubeServer = "https://" + masterIP(3) + ":6443" }, Target{Remove: []string{"m3"}}, "kubeconfig-leaving"},
		{"run from a leaving master", func(f *Facts) { f.LocalAddrs = []string{masterIP(3)} }, Target{Remove: []string{"m3"}}, "operator-on-leaving"},
		{"kubeconfig of another cluster", func(f *Facts) { f.APIEndpoints = []string{"10.9.9.1", "10.9.9.2"} }, Target{Remove: []string{"m3"}}, "kubeconfig-other-cluster"},
		{"CA key only on leaving hosts", func(f *Facts) {
			f.CA.KeyPresent = false
			f.CA.KeyOnLeaving = []string{"m3:/etc/kubernetes/ssl/ca-key.pem"}
		}, Target{Remove: []string{"m3"}}, "ca-key-only-on-leaving"},
		{"profile without client auth", func(f *Facts) {
			for i := range f.Certs {
				if f.Certs[i].Info.Subject.CommonName == "etcd" {
					f.Certs[i].ResignProblem = "profile kubernetes lacks client auth"
				}
			}
		}, Target{Remove: []string{"m3"}}, "cert-not-resignable"},
	}
	for _, tc := range cases {
		f := seed003.facts(t)
		tc.edit(&f)
		p := Build(f, tc.target, "test", observedAt)
		if !slices.Contains(refusalCodes(p), tc.code) || len(p.Steps) != 0 {
			t.Errorf("%s: refusals %v, want %s and no step", tc.name, refusalCodes(p), tc.code)
		}
	}
	// A kubeconfig through the proxy, a run from a worker: fine.
	f := seed003.facts(t)
	f.KubeServer, f.LocalAddrs = "https://127.0.0.1:8443", []string{workerIP(1)}
	f.APIEndpoints = []string{masterIP(1), masterIP(2), masterIP(3)}
	if p := Build(f, Target{Remove: []string{"m3"}}, "test", observedAt); len(p.Refusals) > 0 {
		t.Errorf("safe operator setup refused: %v", p.Refusals)
	}
}

// The checksum covers the plan, not its layout: a re-indented copy (jq, an editor) still reads;
// any changed value does not.
func TestChecksumCanonical(t *testing.T) {
	p := Build(seed003.facts(t), Target{Remove: []string{"m2", "m3"}}, "v1", observedAt)
	data, err := Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	compact, _ := json.Marshal(v) // keys sorted, no indentation: another tool's copy
	if _, err := Decode(compact, "v1"); err != nil {
		t.Errorf("re-encoded copy refused: %v", err)
	}
	edited := strings.Replace(string(compact), `"risk":"irreversible"`, `"risk":"safe"`, 1)
	if _, err := Decode([]byte(edited), "v1"); !errors.Is(err, ErrTampered) {
		t.Errorf("edited copy: %v, want ErrTampered", err)
	}
}

// A resume after every removal: the survivors' --initial-cluster rewrite is still derived, the
// same as in the first plan, so the resumed run finds the step it was approved with.
func TestPlanAfterRemovalsKeepsInitialCluster(t *testing.T) {
	first := Build(seed003.facts(t), Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	want, ok := first.Step("etcd/initial-cluster/m1")
	if !ok {
		t.Fatal("first plan has no etcd/initial-cluster/m1")
	}
	f := seed003.facts(t)
	f.Etcd.Members = f.Etcd.Members[:1]
	for _, h := range []string{"m2", "m3"} {
		hu := f.Units[h]
		hu.EtcdStatus.ActiveState, hu.EtcdStatus.UnitFileState = "inactive", "disabled"
		f.Units[h] = hu
	}
	p := Build(f, Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	got, ok := p.Step("etcd/initial-cluster/m1")
	if !ok {
		t.Fatalf("plan after the removals lacks etcd/initial-cluster/m1: %v (refusals %v)", ids(p), p.Refusals)
	}
	if d := StepDiffs(*want, *got); len(d) > 0 {
		t.Errorf("initial-cluster step differs after the removals: %v", d)
	}
}

// A plan naming a kind this binary cannot run, or a step whose ID is not of its kind, is
// refused before anything runs.
func TestCheckKinds(t *testing.T) {
	p := Build(seed003.facts(t), Target{Remove: []string{"m3"}}, "test", observedAt)
	if err := CheckKinds(p); err != nil {
		t.Fatalf("a fresh plan: %v", err)
	}
	for _, k := range Kinds {
		if got, ok := KindOfID(k.Kind + "/x"); !ok || got.Kind != k.Kind {
			t.Errorf("KindOfID(%s/x) = %s", k.Kind, got.Kind)
		}
	}
	p.Steps[1].Kind = "etcd/defrag"
	var unknown *ErrUnknownKind
	if err := CheckKinds(p); !errors.As(err, &unknown) {
		t.Errorf("unknown kind: %v", err)
	}
	p.Steps[1].Kind = KindRemoveMember
	if err := CheckKinds(p); err == nil || !strings.Contains(err.Error(), "starts with its kind") {
		t.Errorf("ID of another kind: %v", err)
	}
}

// --wipe-leaving plans, per reachable leaving host, an irreversible wipe after its units stop,
// behind the snapshot gate; an unknown mode is refused.
func TestWipeLeavingPlanned(t *testing.T) {
	p := Build(seed003.facts(t), Target{Remove: []string{"m2", "m3"}, WipeLeaving: "move"}, "test", observedAt)
	if len(p.Refusals) > 0 {
		t.Fatalf("refused: %v", p.Refusals)
	}
	st, ok := p.Step("nodes/wipe/m2")
	if !ok || st.Risk != Irreversible || st.Params["mode"] != "move" || st.Params["data_dirs"] != "/approot/data/k8s/etcd/data" {
		t.Fatalf("wipe of m2: %+v", st)
	}
	var pre []string
	for _, s := range p.Prerequisites(*st) {
		pre = append(pre, s.ID)
	}
	for _, want := range []string{"etcd/snapshot", "etcd/stop/m2", "components/retire/m2", "lb/stop/m2"} {
		if !slices.Contains(pre, want) {
			t.Errorf("wipe of m2 does not wait for %s: %v", want, pre)
		}
	}
	if p := Build(seed003.facts(t), Target{Remove: []string{"m3"}, WipeLeaving: "shred"}, "test", observedAt); !slices.Contains(refusalCodes(p), "wipe-mode") {
		t.Errorf("unknown wipe mode: %v", p.Refusals)
	}
	if p := Build(seed003.facts(t), Target{Remove: []string{"m3"}}, "test", observedAt); slices.ContainsFunc(p.Steps, func(s Step) bool { return s.Kind == KindWipe }) {
		t.Error("a wipe planned without --wipe-leaving")
	}
}

// Two certificates with one file name on one host (server.pem in /opt/etcd/ssl and in
// /opt/kubernetes/ssl) get two step IDs.
func TestCertStepIDsUnique(t *testing.T) {
	f := seed003.facts(t)
	for i := range f.Certs {
		switch f.Certs[i].Info.Subject.CommonName {
		case "etcd":
			f.Certs[i].Path = "/opt/etcd/ssl/server.pem"
		case "kubernetes":
			f.Certs[i].Path = "/opt/kubernetes/ssl/server.pem"
		}
	}
	p := Build(f, Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	if len(p.Refusals) > 0 {
		t.Fatalf("refused: %v", p.Refusals)
	}
	seen := map[string]bool{}
	var certSteps []string
	for _, s := range p.Steps {
		if seen[s.ID] {
			t.Errorf("step ID %s twice", s.ID)
		}
		seen[s.ID] = true
		if s.Kind == KindCertResign {
			certSteps = append(certSteps, s.ID)
		}
	}
	if len(certSteps) != 2 || !slices.Contains(certSteps, "certs/resign/m1/opt-etcd-ssl/server") {
		t.Errorf("certificate steps %v", certSteps)
	}
}

// One certificate file on several survivors, used otherwise on each: each host keeps its own
// users, so the executor probes and restarts what really serves it there.
func TestCertGroupKeepsEachHostsUsers(t *testing.T) {
	c := cluster{masters: 5, workers: 0, leader: 1}
	f := c.facts(t)
	for i := range f.Certs {
		if f.Certs[i].Host == "m2" && f.Certs[i].Info.Subject.CommonName == "etcd" {
			f.Certs[i].UsedBy = []string{"kube-apiserver --etcd-certfile"}
		}
	}
	p := Build(f, Target{Remove: []string{"m4", "m5"}}, "test", observedAt)
	st, ok := p.Step("certs/resign/etcd")
	if !ok {
		t.Fatalf("no certs/resign/etcd: %v", ids(p))
	}
	if st.Params["used_by"] != "kube-etcd --cert-file,kube-apiserver --etcd-certfile" || st.Params["used_by@m2"] != "kube-apiserver --etcd-certfile" {
		t.Errorf("params %v", st.Params)
	}
	if _, ok := st.Params["used_by@m3"]; ok {
		t.Errorf("m3 uses it as m1 does, yet has its own users: %v", st.Params)
	}
}
