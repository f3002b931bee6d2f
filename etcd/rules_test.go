package etcd

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func facts(leader uint64, ms ...Member) Facts {
	for i := range ms {
		if ms[i].PeerURLs == nil {
			ms[i].PeerURLs = []string{"https://10.0.0." + ms[i].Name[1:] + ":2380"}
		}
		ms[i].IsLeader = ms[i].ID == leader
	}
	return Facts{ClusterID: 0xc1, LeaderID: leader, Members: ms}
}

func up(id uint64, name string, applied uint64) Member {
	return Member{ID: id, Name: name, Healthy: true, RaftAppliedIndex: applied}
}

func down(id uint64, name string) Member {
	return Member{ID: id, Name: name, Error: "connect: connection refused"}
}

func TestQuorum(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4} {
		if got := Quorum(n); got != want {
			t.Errorf("Quorum(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestCheckRemoval(t *testing.T) {
	three := facts(1, up(1, "m1", 10), up(2, "m2", 10), up(3, "m3", 10))
	threeOneDown := facts(1, up(1, "m1", 10), up(2, "m2", 10), down(3, "m3"))
	learner := up(4, "m4", 10)
	learner.IsLearner = true
	for _, tc := range []struct {
		name    string
		f       Facts
		remove  uint64
		offline bool
		want    error // nil, ErrQuorumAtRisk, ErrLeaderLeaving, ErrNotMember
		mention string
	}{
		{"healthy follower", three, 2, false, nil, ""},
		{"leader", three, 1, false, ErrLeaderLeaving, "leader"},
		{"unknown member", three, 9, false, ErrNotMember, ""},
		{"survivor down", threeOneDown, 2, false, ErrQuorumAtRisk, "m3"},
		{"survivor down, offline", threeOneDown, 2, true, ErrQuorumAtRisk, "m3"},
		{"leaving member down", threeOneDown, 3, false, ErrQuorumAtRisk, "offline"},
		{"leaving member down, planned offline", threeOneDown, 3, true, nil, ""},
		{"last member", facts(1, up(1, "m1", 1)), 1, false, ErrQuorumAtRisk, "last member"},
		{"2 to 1, the other down", facts(1, up(1, "m1", 5), down(2, "m2")), 1, false, ErrQuorumAtRisk, "m2"},
		{"2 to 1, removing the down one", facts(1, up(1, "m1", 5), down(2, "m2")), 2, false, ErrQuorumAtRisk, "offline"},
		{"2 to 1, removing the down one offline", facts(1, up(1, "m1", 5), down(2, "m2")), 2, true, ErrQuorumAtRisk, "quorum of 2"},
		{"2 to 1, both up", facts(1, up(1, "m1", 5), up(2, "m2", 5)), 2, false, nil, ""},
		{"5 members, 2 down, remove a third offline", facts(1, up(1, "m1", 1), up(2, "m2", 1), up(3, "m3", 1), down(4, "m4"), down(5, "m5")), 3, true, ErrQuorumAtRisk, "m4"},
		{"no leader", facts(0, up(1, "m1", 1), up(2, "m2", 1), up(3, "m3", 1)), 3, false, ErrQuorumAtRisk, "no leader"},
		{"only a learner would stay", facts(1, up(1, "m1", 1), learner), 1, false, ErrQuorumAtRisk, "learner"},
		{"removing a learner", facts(1, up(1, "m1", 1), up(2, "m2", 1), up(3, "m3", 1), learner), 4, false, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckRemoval(tc.f, tc.remove, tc.offline)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.want != ErrNotMember {
				var r *RefusalError
				if !errors.As(err, &r) || r.Reason == "" || r.WayOut == "" {
					t.Fatalf("%v is not a refusal with a reason and a way out", err)
				}
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("%q does not mention %q", err, tc.mention)
			}
		})
	}
}

func TestPickNewLeader(t *testing.T) {
	f := facts(1, up(1, "m1", 50), up(2, "m2", 40), up(3, "m3", 48), down(4, "m4"), up(5, "m5", 48))
	if got, err := PickNewLeader(f, []uint64{2}); err != nil || got != 1 {
		t.Errorf("staying leader: got %x, %v; want 1", got, err)
	}
	if got, err := PickNewLeader(f, []uint64{1, 2}); err != nil || got != 3 {
		t.Errorf("got %x, %v; want 3 (highest applied index, then name)", got, err)
	}
	if got, err := PickNewLeader(f, []uint64{1, 3, 5, 2}); !errors.Is(err, ErrNoCandidate) {
		t.Errorf("only a down member stays: got %x, %v", got, err)
	}
}

func TestInitialClusterFor(t *testing.T) {
	f := facts(1, up(1, "m1", 1), up(2, "m2", 1), up(3, "m3", 1))
	if got, want := InitialClusterFor(f, []string{"m3", "m1"}), "m1=https://10.0.0.1:2380,m3=https://10.0.0.3:2380"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := InitialClusterFor(f, []string{"nope"}); got != "" {
		t.Errorf("unknown survivor gave %q", got)
	}
}

// The streaming check must see the same bytes whatever the chunking of the stream.
func TestTrailerHashChunking(t *testing.T) {
	content := make([]byte, 10000)
	for i := range content {
		content[i] = byte(i * 7)
	}
	sum := sha256.Sum256(content)
	file := append(bytes.Clone(content), sum[:]...)
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		th := newTrailerHash()
		for rest := file; len(rest) > 0; {
			n := 1 + r.IntN(min(len(rest), []int{1, 31, 33, 4096}[round%4]))
			th.Write(rest[:n])
			rest = rest[n:]
		}
		if err := th.check(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	bad := bytes.Clone(file)
	bad[5000] ^= 1
	th := newTrailerHash()
	th.Write(bad)
	if err := th.check(); !errors.Is(err, ErrSnapshotCorrupt) {
		t.Fatalf("flipped byte: %v", err)
	}
}
