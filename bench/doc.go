// Package bench measures mastershrink against what an operator would use instead: the 3-to-1
// shrink in the lab against seed 003's manual procedure, and the component benchmarks against
// openssl, etcdctl and kubectl; it turns repeated runs into one table of medians and spreads.
package bench
