// Package etcdfacts is the pure half of package etcd: what an etcd cluster is as observed
// (Facts, Member, hex IDs) and the decisions taken from it without touching the cluster
// (CheckRemoval, PickNewLeader, InitialClusterFor, PlanSurvivorUnit). Start at Facts. The
// planner imports this package; package etcd observes the cluster, executes the steps and
// re-exports every name here.
package etcdfacts
