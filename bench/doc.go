// Package bench measures mastershrink against what an operator would use instead: the 3-to-1
// shrink in the lab against seed 003's manual procedure, the same apply with hundreds of node
// proxies against an xargs ssh loop, and the component benchmarks against openssl and cfssl
// (certificate inspection), etcdctl (a 1 GiB snapshot) and kubectl (drain); it turns repeated
// runs into one table of medians and spreads.
package bench
