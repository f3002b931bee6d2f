//go:build !faultinject

package runner

// Without -tags faultinject (every production build) the crash points do nothing: see crash.go.

func crashAfter(string) {}

func crashIn(string) (stop func()) { return func() {} }

func pauseAfter(string) {}
