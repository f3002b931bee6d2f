package etcd

import "time"

// SetProgressInterval lets tests see progress lines without waiting 10 s.
func SetProgressInterval(d time.Duration) (restore func()) {
	old := progressInterval
	progressInterval = d
	return func() { progressInterval = old }
}
