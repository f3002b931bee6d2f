// Package inventory reads and validates the operator's cluster file: the hosts, their roles,
// how to reach them, and where each deployment layout keeps its units, configs and PKI.
package inventory
