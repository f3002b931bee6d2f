package runner

import (
	"fmt"
	"time"

	"github.com/mastershrink/mastershrink/etcd"
)

// checkSnapshot is the gate of every irreversible step: the journal must hold a snapshot of
// this plan whose file is still there and still verifies, with the same hash.
func (r *run) checkSnapshot() error {
	s := r.history.Snapshot
	if s == nil {
		return fmt.Errorf("%w: run the etcd/snapshot step first (it is not selected, or did not run)", ErrNoSnapshot)
	}
	if err := r.freshSnapshot(s); err != nil {
		return fmt.Errorf("%w: %v; run again with etcd/snapshot selected: it takes a new one", ErrNoSnapshot, err)
	}
	return nil
}

// freshSnapshot says why a journaled snapshot may not stand for the cluster now: it is gone,
// no longer verifies, or is older than the bound.
func (r *run) freshSnapshot(s *Snapshot) error {
	if err := verifySnapshot(s); err != nil {
		return err
	}
	if s.TakenAt.IsZero() || time.Since(s.TakenAt) > r.opts.SnapshotMaxAge {
		return fmt.Errorf("snapshot %s was taken at %s, more than %s ago (--snapshot-max-age)", s.Path, s.TakenAt.Format(time.RFC3339), r.opts.SnapshotMaxAge)
	}
	return nil
}

func verifySnapshot(s *Snapshot) error {
	info, err := etcd.VerifySnapshot(s.Path)
	if err != nil {
		return err
	}
	if info.SHA256 != s.SHA256 || info.Revision != s.Revision || info.Keys != s.Keys {
		return fmt.Errorf("snapshot %s no longer matches the journal (sha256 %s, revision %d, %d keys; journal says %s, %d, %d)",
			s.Path, info.SHA256, info.Revision, info.Keys, s.SHA256, s.Revision, s.Keys)
	}
	return nil
}
