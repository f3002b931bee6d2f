package plan

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Every params struct survives the trip through a step's plain-string Params, and the table
// names the struct of each kind that has one.
func TestParamsRoundTrip(t *testing.T) {
	cases := []Params{
		APIServerUpdateParams{Restart: []string{"kube-apiserver", "kube-controller-manager"}},
		RetireParams{Units: []string{"kube-apiserver.service"}, Offline: true},
		MoveLeaderParams{Leaving: []string{"8e9e05c52164694d", "91bc3c398fb3c146"}},
		RemoveMemberParams{MemberID: "8e9e05c52164694d", Member: "m2", PeerURLs: []string{"https://10.0.0.2:2380"}},
		StopEtcdParams{Unit: "kube-etcd", Endpoint: "https://10.0.0.2:2379", Address: "10.0.0.2"},
		InitialClusterParams{Unit: "etcd"},
		LBUpdateParams{Leaving: []string{"10.0.0.2", "10.0.0.3"}, Mode: "down"},
		LBStopParams{Unit: "kube-nginx"},
		VIPReleaseParams{Unit: "keepalived.service", VIPs: []string{"10.0.0.100", "10.0.0.101"}, Backups: []string{"m1"}},
		VIPUpdateParams{Unit: "keepalived.service", Reload: true},
		CertResignParams{Path: "/etc/kubernetes/ssl/etcd.pem", KeyPath: "/etc/kubernetes/ssl/etcd-key.pem",
			Hosts: []string{"m1", "m2"}, Serial: "1a", Remove: []string{"10.0.0.3"}, UsedBy: []string{"kube-etcd --cert-file"},
			UsedByOn: map[string][]string{"m2": {"kube-etcd --peer-cert-file", "kube-apiserver --etcd-certfile"}}},
		DrainParams{Node: "w2", NodeDown: true},
		DeleteNodeParams{Node: "w2"},
		WipeParams{Mode: "move", DataDirs: []string{"/var/lib/etcd"}},
	}
	seen := map[string]bool{}
	for _, p := range cases {
		st := Step{ID: p.ParamsKind() + "/x", Kind: p.ParamsKind(), Params: EncodeParams(p)}
		got, err := decodeAny(p, st)
		if err != nil {
			t.Errorf("%s: %v", st.Kind, err)
			continue
		}
		if !reflect.DeepEqual(got, p) {
			t.Errorf("%s: round trip\n got %#v\nwant %#v", st.Kind, got, p)
		}
		k, _ := Kind(st.Kind)
		if reflect.TypeOf(k.Params) != reflect.TypeOf(p) {
			t.Errorf("kind %s: the table says params %T, the struct for it is %T", st.Kind, k.Params, p)
		}
		seen[st.Kind] = true
	}
	for _, k := range Kinds {
		if k.Params != nil && !seen[k.Kind] {
			t.Errorf("kind %s has params %T with no round-trip case here", k.Kind, k.Params)
		}
	}
}

// decodeAny calls DecodeParams with p's own type.
func decodeAny(p Params, st Step) (Params, error) {
	switch p.(type) {
	case APIServerUpdateParams:
		return DecodeParams[APIServerUpdateParams](st)
	case RetireParams:
		return DecodeParams[RetireParams](st)
	case MoveLeaderParams:
		return DecodeParams[MoveLeaderParams](st)
	case RemoveMemberParams:
		return DecodeParams[RemoveMemberParams](st)
	case StopEtcdParams:
		return DecodeParams[StopEtcdParams](st)
	case InitialClusterParams:
		return DecodeParams[InitialClusterParams](st)
	case LBUpdateParams:
		return DecodeParams[LBUpdateParams](st)
	case LBStopParams:
		return DecodeParams[LBStopParams](st)
	case VIPReleaseParams:
		return DecodeParams[VIPReleaseParams](st)
	case VIPUpdateParams:
		return DecodeParams[VIPUpdateParams](st)
	case CertResignParams:
		return DecodeParams[CertResignParams](st)
	case DrainParams:
		return DecodeParams[DrainParams](st)
	case DeleteNodeParams:
		return DecodeParams[DeleteNodeParams](st)
	case WipeParams:
		return DecodeParams[WipeParams](st)
	}
	return nil, errors.New("no decoder")
}

// The encoding is the one plans have always had: a reviewer reads plain strings, and a
// plan made before the typed params compares equal to one made now.
func TestParamsEncoding(t *testing.T) {
	got := EncodeParams(CertResignParams{Path: "/p.pem", Hosts: []string{"m1", "m2"}, UsedBy: []string{"a", "b"},
		UsedByOn: map[string][]string{"m2": {"c"}}})
	want := map[string]string{"path": "/p.pem", "key_path": "", "hosts": "m1,m2", "serial": "", "remove": "", "used_by": "a,b", "used_by@m2": "c"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if got := EncodeParams(DrainParams{Node: "w1"}); !reflect.DeepEqual(got, map[string]string{"node": "w1"}) {
		t.Errorf("a false bool is left out: got %v", got)
	}
	// An omitempty string is there when set, and reads back.
	withCA := CertResignParams{Path: "/p.pem", CAHost: "m1", CACert: "/ca.pem", CAKey: "/ca-key.pem"}
	enc := EncodeParams(withCA)
	if enc["ca_host"] != "m1" || enc["ca_cert"] != "/ca.pem" || enc["ca_key"] != "/ca-key.pem" {
		t.Errorf("CA params: %v", enc)
	}
	back, err := DecodeParams[CertResignParams](Step{ID: "certs/resign/p", Kind: KindCertResign, Params: enc})
	if err != nil || back.CAHost != "m1" || back.CACert != "/ca.pem" || back.CAKey != "/ca-key.pem" {
		t.Errorf("decoded %+v, %v", back, err)
	}
}

func TestParamsRefused(t *testing.T) {
	st := Step{ID: "nodes/drain/w1", Kind: KindDrain, Params: map[string]string{"node": "w1"}}
	if _, err := DecodeParams[DeleteNodeParams](st); err == nil || !strings.Contains(err.Error(), "is a nodes/drain step") {
		t.Errorf("decoding a drain step as a delete: %v", err)
	}
	st.Params["force"] = "true"
	p := &Plan{Steps: []Step{st}}
	err := CheckKinds(p)
	if !errors.Is(err, ErrStepKind) || !strings.Contains(err.Error(), "force") {
		t.Errorf("unknown param: %v", err)
	}
	p.Steps = []Step{{ID: "verify/final", Kind: KindVerify, Params: map[string]string{"node": "w1"}}}
	if err := CheckKinds(p); !errors.Is(err, ErrStepKind) {
		t.Errorf("params on a kind that takes none: %v", err)
	}
}

// A plan made by the version before typed params and planned set-asides is refused, with
// the way out.
func TestOlderFormatRefused(t *testing.T) {
	_, err := Decode([]byte(`{"format_version": 2, "cluster": "c", "checksum": "sha256:00", "steps": []}`), "")
	if !errors.Is(err, ErrFormatVersion) || !strings.Contains(err.Error(), "2, this mastershrink reads 3: make the plan again") {
		t.Errorf("version-2 plan: %v", err)
	}
}
