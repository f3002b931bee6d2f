package etcdfacts

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Member is one etcd member as the cluster lists it and as it answers for itself.
type Member struct {
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
	IsLearner  bool
	// Healthy is true when the member answered a status request, has no alarm and served a
	// linearizable read (so it is connected to a leader of a quorum).
	Healthy bool
	// Error says why the member is not healthy.
	Error            string
	Version          string
	DBSize           int64
	RaftTerm         uint64
	RaftIndex        uint64
	RaftAppliedIndex uint64
	IsLeader         bool
}

// Facts is what Observe found: the cluster, its leader and every member.
type Facts struct {
	ClusterID uint64
	// LeaderID is the leader the healthy members agree on; 0 when there is none.
	LeaderID uint64
	// Members are sorted by name (unnamed, never-started members last, by ID).
	Members []Member
}

// Member returns the member with id.
func (f Facts) Member(id uint64) (Member, bool) {
	for _, m := range f.Members {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// MemberByName returns the member called name.
func (f Facts) MemberByName(name string) (Member, bool) {
	for _, m := range f.Members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// Leader returns the leader's member entry.
func (f Facts) Leader() (Member, bool) {
	if f.LeaderID == 0 {
		return Member{}, false
	}
	return f.Member(f.LeaderID)
}

// FormatID prints a member or cluster ID as etcdctl does.
func FormatID(id uint64) string { return fmt.Sprintf("%x", id) }

// ParseID reads an ID printed by FormatID or etcdctl.
func ParseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("etcd ID %q: %w", s, err)
	}
	return id, nil
}

type memberJSON struct {
	ID               string   `json:"id"`
	Name             string   `json:"name"`
	PeerURLs         []string `json:"peer_urls"`
	ClientURLs       []string `json:"client_urls"`
	IsLearner        bool     `json:"is_learner"`
	Healthy          bool     `json:"healthy"`
	Error            string   `json:"error,omitempty"`
	Version          string   `json:"version,omitempty"`
	DBSize           int64    `json:"db_size"`
	RaftTerm         uint64   `json:"raft_term"`
	RaftIndex        uint64   `json:"raft_index"`
	RaftAppliedIndex uint64   `json:"raft_applied_index"`
	IsLeader         bool     `json:"is_leader"`
}

// MarshalJSON writes the ID as a hex string, as etcdctl prints it.
func (m Member) MarshalJSON() ([]byte, error) {
	return json.Marshal(memberJSON{
		ID: FormatID(m.ID), Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs,
		IsLearner: m.IsLearner, Healthy: m.Healthy, Error: m.Error, Version: m.Version,
		DBSize: m.DBSize, RaftTerm: m.RaftTerm, RaftIndex: m.RaftIndex,
		RaftAppliedIndex: m.RaftAppliedIndex, IsLeader: m.IsLeader,
	})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (m *Member) UnmarshalJSON(data []byte) error {
	var j memberJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	id, err := ParseID(j.ID)
	if err != nil {
		return err
	}
	*m = Member{
		ID: id, Name: j.Name, PeerURLs: j.PeerURLs, ClientURLs: j.ClientURLs,
		IsLearner: j.IsLearner, Healthy: j.Healthy, Error: j.Error, Version: j.Version,
		DBSize: j.DBSize, RaftTerm: j.RaftTerm, RaftIndex: j.RaftIndex,
		RaftAppliedIndex: j.RaftAppliedIndex, IsLeader: j.IsLeader,
	}
	return nil
}

type factsJSON struct {
	ClusterID string   `json:"cluster_id"`
	LeaderID  string   `json:"leader_id"`
	Members   []Member `json:"members"`
}

// MarshalJSON writes IDs as hex strings.
func (f Facts) MarshalJSON() ([]byte, error) {
	ms := f.Members
	if ms == nil {
		ms = []Member{}
	}
	return json.Marshal(factsJSON{ClusterID: FormatID(f.ClusterID), LeaderID: FormatID(f.LeaderID), Members: ms})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (f *Facts) UnmarshalJSON(data []byte) error {
	var j factsJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	cid, err := ParseID(j.ClusterID)
	if err != nil {
		return err
	}
	lid, err := ParseID(j.LeaderID)
	if err != nil {
		return err
	}
	*f = Facts{ClusterID: cid, LeaderID: lid, Members: j.Members}
	return nil
}
