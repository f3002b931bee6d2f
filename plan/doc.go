// Package plan is the pure heart of mastershrink: observed facts plus the operator's target
// in, an ordered list of steps out, with the exact files each step rewrites, the etcd quorum
// at every membership change, the point of no return, refusals and a fingerprint of the
// facts relied on. It does no I/O beyond encoding the plan.
//
// Start at Build (build.go). kinds.go is the table of step kinds (IDs, prerequisites,
// read-only, params); identity.go maps etcd members to hosts by address; build_<family>.go
// plan each family and declare its kinds' params structs, which params.go encodes into the
// plan file and decodes for the executors; redact.go keeps secrets out of every plan;
// file.go reads and writes the plan file; compare.go tells a reviewed plan from one derived
// now.
//
// A new step kind touches three files: kinds.go (its row), its build_<family>.go (planner
// and params) and runner's exec_<family>.go (executor, registered there).
package plan
