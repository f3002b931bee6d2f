package heartbeat

import (
	"context"
	"fmt"
	"time"
)

// Start calls beat with the time since Start every interval, until stop is called or ctx is
// done. stop returns once beat has returned, so that nothing is printed after it.
func Start(ctx context.Context, every time.Duration, beat func(elapsed time.Duration)) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				beat(time.Since(start))
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// Elapsed is a beat's elapsed time as the "still ..." lines print it: "01m10s".
func Elapsed(d time.Duration) string {
	s := int(d.Round(time.Second) / time.Second)
	return fmt.Sprintf("%02dm%02ds", s/60, s%60)
}
