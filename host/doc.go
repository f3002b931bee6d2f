// Package host reaches one machine, over SSH or locally: it runs commands, reads files,
// writes them atomically with backups, controls systemd units and tunnels TCP connections.
// It is the only package of mastershrink that touches a machine. The contract it implements
// (Host, Systemd and their values) is declared in host/machine, so pure packages can name it
// without SSH or D-Bus; this package re-exports every name. Over a fleet, what costs is the
// number of SSH commands per node: ReadAhead answers an observation's reads from one command,
// and machine.WriteThen runs a command in the write's own. Tests fake a machine with
// host/hosttest and start a real sshd with host/sshdtest.
package host
