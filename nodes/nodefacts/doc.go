// Package nodefacts is the pure half of package nodes: the Nodes, pods and PodDisruptionBudgets
// as the planner sees them, free of client-go. Start at Node. Package nodes observes them
// through the API, drains and cleans, and re-exports every name here.
package nodefacts
