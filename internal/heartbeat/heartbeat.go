package heartbeat

import (
	"context"
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
