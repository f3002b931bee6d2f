// Package etcd observes an etcd cluster (members, leader, per-member status and health) and
// executes the etcd steps of a shrink: a verified snapshot from the leader, leadership
// transfer, member removal that never loses quorum, and the host-side stop and unit rewrite.
// The facts and the pure rules over them (Facts, CheckRemoval, PickNewLeader,
// PlanSurvivorUnit) live in etcdfacts, which the planner imports; this package re-exports them.
package etcd
