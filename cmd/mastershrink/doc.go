// Command mastershrink plans and applies the safe shrink of a binary-deployed Kubernetes
// control plane: cobra wiring only, each command an options struct and a run function, exit
// codes in exitcode.go.
package main
