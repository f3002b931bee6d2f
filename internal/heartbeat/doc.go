// Package heartbeat says that a long wait is still going: Start calls a function at a fixed
// interval with the time elapsed, until stopped. apply's "still …" lines (runner/progress.go),
// the drain's and the demo's use it.
package heartbeat
