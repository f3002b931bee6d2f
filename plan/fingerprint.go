package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
)

// Fingerprint hashes what the plan's steps rely on: the target, every step's identity,
// host, params and the exact files before and after, the etcd membership (IDs, names, URLs,
// health) and the hosts' reachability. It leaves out what moves on its own in a healthy
// cluster (the leader, raft indexes, DB size, pods), so a plan stays valid while the cluster
// merely runs, and goes stale when anything a step would act on has changed.
func Fingerprint(p *Plan) string {
	type file struct{ Host, Path, Before, After string }
	type step struct {
		ID, Kind, Host string
		Params         map[string]string
		Files          []file
	}
	type member struct {
		ID                   string
		Name                 string
		PeerURLs, ClientURLs []string
		Healthy              bool
	}
	type hostFact struct {
		Name, Address string
		Reachable     bool
	}
	var in struct {
		Format   int
		Target   Target
		Steps    []step
		Members  []member
		Hosts    []hostFact
		Refusals []string
	}
	in.Format = p.FormatVersion
	in.Target = p.Target
	for _, s := range p.Steps {
		st := step{ID: s.ID, Kind: s.Kind, Host: s.Host, Params: s.Params}
		for _, f := range s.Files {
			st.Files = append(st.Files, file{f.Host, f.Path, digest(f.Before), digest(f.After)})
		}
		in.Steps = append(in.Steps, st)
	}
	for _, m := range p.Facts.Etcd.Members {
		in.Members = append(in.Members, member{fmt.Sprintf("%x", m.ID), m.Name, m.PeerURLs, m.ClientURLs, m.Healthy})
	}
	sort.Slice(in.Members, func(i, j int) bool { return in.Members[i].ID < in.Members[j].ID })
	for _, h := range p.Facts.Hosts {
		in.Hosts = append(in.Hosts, hostFact{h.Name, h.Address, h.Reachable})
	}
	for _, r := range p.Refusals {
		in.Refusals = append(in.Refusals, r.Code)
	}
	data, err := json.Marshal(in)
	if err != nil {
		// Only plain strings, ints and bools are marshalled: this cannot happen.
		panic(err)
	}
	return "sha256:" + digest(string(data))
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
