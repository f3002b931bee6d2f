// Package host reaches one machine, over SSH or locally: it runs commands, reads files,
// writes them atomically with backups, controls systemd units and tunnels TCP connections.
// It is the only package of mastershrink that touches a machine.
package host
