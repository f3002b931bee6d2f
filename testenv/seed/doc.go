// Package seed fills test clusters with realistic content: workloads to drain (workloads.go)
// and the keys and certificates the lab needs (keys.go).
package seed
