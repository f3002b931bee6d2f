package heartbeat

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// It beats with a growing elapsed time, and never after stop has returned.
func TestStartStop(t *testing.T) {
	var beats atomic.Int64
	var last atomic.Int64
	stop := Start(context.Background(), 5*time.Millisecond, func(elapsed time.Duration) {
		if int64(elapsed) < last.Load() {
			t.Errorf("elapsed went back: %v after %v", elapsed, time.Duration(last.Load()))
		}
		last.Store(int64(elapsed))
		beats.Add(1)
	})
	for deadline := time.Now().Add(5 * time.Second); beats.Load() < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("fewer than 3 beats in 5 s at 5 ms")
		}
	}
	stop()
	n := beats.Load()
	time.Sleep(30 * time.Millisecond)
	if beats.Load() != n {
		t.Fatalf("%d beats after stop returned", beats.Load()-n)
	}
}

// A done context ends the beats without stop; stop still returns.
func TestContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var beats atomic.Int64
	stop := Start(ctx, time.Millisecond, func(time.Duration) { beats.Add(1) })
	cancel()
	time.Sleep(20 * time.Millisecond)
	n := beats.Load()
	time.Sleep(20 * time.Millisecond)
	if beats.Load() != n {
		t.Fatal("beats went on after the context was done")
	}
	stop()
}

func TestElapsed(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "00m00s", 1499 * time.Millisecond: "00m01s", 80 * time.Second: "01m20s", 61*time.Minute + 5*time.Second: "61m05s"} {
		if got := Elapsed(d); got != want {
			t.Errorf("Elapsed(%v) = %s, want %s", d, got, want)
		}
	}
}
