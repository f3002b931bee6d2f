package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// LockKey is the etcd key of the apply lock.
const LockKey = "/mastershrink/lock"

// DefaultLockTTL is the lease of the lock: a crashed run's lock is gone this long after the
// crash.
const DefaultLockTTL = 30 * time.Second

// ErrLocked means another apply holds the lock.
var ErrLocked = errors.New("another mastershrink apply holds the cluster lock")

// ErrLockLost means the lock's lease ended while this run held it (etcd unreachable for
// longer than the TTL): another apply may have taken it, so nothing more may be changed.
var ErrLockLost = errors.New("the cluster lock was lost")

// Holder is the lock's value: who holds it, for which plan, since when.
type Holder struct {
	Host string `json:"host"`
	// MachineID is /etc/machine-id: a holder of this machine whose process is gone is known
	// dead, even when host names collide across machines.
	MachineID string `json:"machine_id,omitempty"`
	// BootID and PIDNamespace complete MachineID: containers and network namespaces share a
	// machine-id, and a PID means nothing outside its own namespace and boot.
	BootID       string    `json:"boot_id,omitempty"`
	PIDNamespace string    `json:"pid_namespace,omitempty"`
	PID          int       `json:"pid"`
	Plan         string    `json:"plan"`
	Since        time.Time `json:"since"`
}

func (h Holder) String() string {
	return fmt.Sprintf("%s pid %d since %s (plan %s)", h.Host, h.PID, h.Since.Format(time.RFC3339), short(h.Plan))
}

// LockedError is ErrLocked with the holder; Alive when its lease was seen renewed.
type LockedError struct {
	Holder Holder
	Alive  bool
}

func (e *LockedError) Error() string {
	if e.Alive {
		return fmt.Sprintf("%v: %s, which is alive (it renews its lease); wait for it to finish", ErrLocked, e.Holder)
	}
	return fmt.Sprintf("%v: %s; wait for it to finish, or if that process is gone for good its lock expires within %s",
		ErrLocked, e.Holder, DefaultLockTTL)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// Lock is a held apply lock, kept alive until Release.
type Lock struct {
	cli   *clientv3.Client
	lease clientv3.LeaseID
	value string
	// rev is the revision that created the key: the fencing token checked before each step.
	rev    int64
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	lost bool
}

func short(s string) string {
	s = strings.TrimPrefix(s, "sha256:")
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// AcquireLock takes the lock for plan, bound to a lease of ttl kept alive in the background.
// When another run holds it: a holder on this machine whose process is gone, or one that
// stops renewing its lease, crashed, and its lock is waited out (at most ttl, with a line on
// progress); a live holder is refused with *LockedError.
func AcquireLock(ctx context.Context, cli *clientv3.Client, planChecksum string, ttl time.Duration, progress io.Writer) (*Lock, error) {
	if ttl <= 0 {
		ttl = DefaultLockTTL
	}
	hostname, _ := os.Hostname()
	me := Holder{Host: hostname, MachineID: machineID(), BootID: bootID(), PIDNamespace: pidNamespace(),
		PID: os.Getpid(), Plan: planChecksum, Since: time.Now().UTC().Truncate(time.Second)}
	value, _ := json.Marshal(me)
	deadline := time.Now().Add(ttl + 10*time.Second)
	announced := false
	for {
		l, holder, raw, holderLease, err := tryLock(ctx, cli, string(value), ttl)
		if err != nil || l != nil {
			return l, err
		}
		if holder.Host == me.Host && holder.PID == me.PID {
			return nil, &LockedError{Holder: holder}
		}
		if provenDead(me, holder) {
			// A run of this machine that was killed: its lock is taken over at once instead of
			// waiting for the lease, and only if it is still that run's.
			if err := takeOver(ctx, cli, raw); err != nil {
				return nil, err
			}
			if progress != nil {
				fmt.Fprintf(progress, "took over the lock of a run of this machine that is gone (%s)\n", holder)
			}
			continue
		}
		if !announced && progress != nil {
			fmt.Fprintf(progress, "the lock is held by %s; checking whether that run is alive (a live run renews its lease every %s)\n", holder, ttl/3)
		}
		if !crashed(ctx, cli, holder, holderLease) {
			return nil, &LockedError{Holder: holder, Alive: true}
		}
		if time.Now().After(deadline) {
			return nil, &LockedError{Holder: holder}
		}
		if !announced && progress != nil {
			fmt.Fprintf(progress, "that run stopped renewing its lease: waiting for its lock to expire, at most %s\n", ttl)
			announced = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// provenDead says whether holder is a run of this very machine, boot and PID namespace whose
// process is gone: only then may its lock be taken before its lease ends.
func provenDead(me, holder Holder) bool {
	return me.MachineID != "" && holder.MachineID == me.MachineID &&
		me.BootID != "" && holder.BootID == me.BootID &&
		me.PIDNamespace != "" && holder.PIDNamespace == me.PIDNamespace &&
		holder.PID > 0 && !processAlive(holder.PID)
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func pidNamespace() string {
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return ns
}

func machineID() string {
	b, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func takeOver(ctx context.Context, cli *clientv3.Client, raw string) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Txn(rctx).If(clientv3.Compare(clientv3.Value(LockKey), "=", raw)).Then(clientv3.OpDelete(LockKey)).Commit(); err != nil {
		return fmt.Errorf("lock %s: take over: %w", LockKey, err)
	}
	return nil
}

// tryLock creates the key if absent; otherwise it returns the holder, its raw value and its
// lease.
func tryLock(ctx context.Context, cli *clientv3.Client, value string, ttl time.Duration) (*Lock, Holder, string, clientv3.LeaseID, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lease, err := cli.Grant(rctx, int64(ttl/time.Second))
	if err != nil {
		// No one holds anything yet: etcd itself did not answer (no quorum, or unreachable).
		return nil, Holder{}, "", 0, fmt.Errorf("take the lock %s: etcd did not grant a lease, so it has no quorum or cannot be reached (not another apply): %w", LockKey, err)
	}
	resp, err := cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(LockKey), "=", 0)).
		Then(clientv3.OpPut(LockKey, value, clientv3.WithLease(lease.ID))).
		Else(clientv3.OpGet(LockKey)).
		Commit()
	if err != nil {
		cli.Revoke(context.WithoutCancel(rctx), lease.ID)
		return nil, Holder{}, "", 0, fmt.Errorf("lock %s: %w", LockKey, err)
	}
	if !resp.Succeeded {
		cli.Revoke(context.WithoutCancel(rctx), lease.ID)
		var h Holder
		var raw string
		var holderLease clientv3.LeaseID
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			raw = string(kvs[0].Value)
			if json.Unmarshal(kvs[0].Value, &h) != nil {
				h.Host = raw
			}
			holderLease = clientv3.LeaseID(kvs[0].Lease)
		}
		return nil, h, raw, holderLease, nil
	}
	kctx, kcancel := context.WithCancel(context.WithoutCancel(ctx))
	ch, err := cli.KeepAlive(kctx, lease.ID)
	if err != nil {
		kcancel()
		cli.Revoke(context.WithoutCancel(rctx), lease.ID)
		return nil, Holder{}, "", 0, fmt.Errorf("lock %s: keep lease alive: %w", LockKey, err)
	}
	l := &Lock{cli: cli, lease: lease.ID, value: value, rev: resp.Header.Revision, cancel: kcancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for range ch {
		}
		// The channel closes when the keepalive stops: on Release, or when the lease expired.
		if kctx.Err() == nil {
			l.mu.Lock()
			l.lost = true
			l.mu.Unlock()
		}
	}()
	return l, Holder{}, "", 0, nil
}

// crashed says whether the holder stopped renewing its lease. clientv3 renews every third of
// the TTL, so over a third of the TTL and a margin a live holder's TTL goes up at least once;
// a TTL that only goes down belongs to a run that is gone.
func crashed(ctx context.Context, cli *clientv3.Client, h Holder, lease clientv3.LeaseID) bool {
	if lease == 0 {
		return false
	}
	ttl := func() int64 {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, err := cli.TimeToLive(rctx, lease)
		if err != nil {
			return -1
		}
		return r.TTL
	}
	last := ttl()
	if last < 0 {
		return true // the lease is gone already: the next try takes the lock
	}
	end := time.Now().Add(time.Duration(last)*time.Second/3 + 3*time.Second)
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
		now := ttl()
		if now < 0 {
			return true
		}
		if now > last {
			return false // renewed
		}
		last = now
	}
	return true
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Lost says whether the lease ended while held.
func (l *Lock) Lost() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// Verify proves the lock is still this run's before a step changes anything: the lease has
// not ended, and the key exists with the revision that created it and our value (a deleted
// key, or one another run took after it, ends this run). A lock that cannot be read is not
// proven ours either.
func (l *Lock) Verify(ctx context.Context) error {
	if l.Lost() {
		return ErrLockLost
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := l.cli.Get(rctx, LockKey)
	if err != nil {
		return fmt.Errorf("%w: cannot read %s to prove it is still ours: %v", ErrLockLost, LockKey, err)
	}
	if len(resp.Kvs) == 0 {
		return fmt.Errorf("%w: the key %s was deleted while this run held it; another apply may be running", ErrLockLost, LockKey)
	}
	kv := resp.Kvs[0]
	if kv.CreateRevision != l.rev || string(kv.Value) != l.value {
		var h Holder
		who := string(kv.Value)
		if json.Unmarshal(kv.Value, &h) == nil {
			who = h.String()
		}
		return fmt.Errorf("%w: %s is now held by %s (created at revision %d, ours was %d)", ErrLockLost, LockKey, who, kv.CreateRevision, l.rev)
	}
	return nil
}

// Release deletes the key if it is still ours and revokes the lease.
func (l *Lock) Release(ctx context.Context) error {
	l.cancel()
	<-l.done
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := l.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.Value(LockKey), "=", l.value)).
		Then(clientv3.OpDelete(LockKey)).
		Commit()
	if _, rerr := l.cli.Revoke(rctx, l.lease); err == nil && rerr != nil && !strings.Contains(rerr.Error(), "not found") {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("release lock %s: %w", LockKey, err)
	}
	return nil
}

// ReadLock returns the current holder, nil when the lock is free.
func ReadLock(ctx context.Context, cli *clientv3.Client) (*Holder, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cli.Get(rctx, LockKey)
	if err != nil {
		return nil, fmt.Errorf("read lock %s: %w", LockKey, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var h Holder
	if err := json.Unmarshal(resp.Kvs[0].Value, &h); err != nil {
		return nil, fmt.Errorf("read lock %s: %w", LockKey, err)
	}
	return &h, nil
}
