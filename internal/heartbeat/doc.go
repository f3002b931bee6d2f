// Package heartbeat says that a long wait is still going: Start calls a function at a fixed
// interval with the time elapsed, until stopped, and Elapsed prints that time as the "still …"
// lines do. apply's lines (runner/progress.go), the apiserver restarts' and lease waits'
// (apiserver/restart.go), the drain's and the demo's use it.
package heartbeat
