package etcd

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/testenv"
)

// A stream that delivers reports its progress; one that stops delivering for snapshotStall
// is cancelled, with the cause naming the member and the wait.
func TestWatchProgressThenStall(t *testing.T) {
	oldStall, oldProgress := snapshotStall, progressInterval
	snapshotStall, progressInterval = 200*time.Millisecond, 20*time.Millisecond
	t.Cleanup(func() { snapshotStall, progressInterval = oldStall, oldProgress })

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var received atomic.Int64
	var out testenv.Buffer
	stop := watch(ctx, cancel, &received, time.Now(), &out, "m1")
	defer stop()
	for i := range 10 {
		received.Store(int64(i+1) << 20)
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "snapshot from m1: ") {
		t.Errorf("no progress line while data came: %q", out.String())
	}
	select {
	case <-ctx.Done():
		t.Fatalf("cancelled while data came: %v", context.Cause(ctx))
	default:
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a stream with no data for 5 s was not cancelled")
	}
	if cause := context.Cause(ctx); cause == nil || !strings.Contains(cause.Error(), "snapshot stream from m1 stalled") {
		t.Fatalf("cause %v", cause)
	}
}
