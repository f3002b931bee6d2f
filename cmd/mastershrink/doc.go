// Command mastershrink plans and applies the safe shrink of a binary-deployed Kubernetes
// control plane: cobra wiring only. Start at root.go's commands, the list of every command.
// Each command is an options struct, a constructor taking a test hook (newXCmd(g, runF), as
// the GitHub CLI's NewCmdX) that builds and validates the options, and a run function; exit
// codes are in exitcode.go.
package main
