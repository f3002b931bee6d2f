// Package machine is what mastershrink may ask of one machine, without reaching any: the Host
// and Systemd interfaces and the plain values that pass through them (Result, CmdError,
// WriteOptions, WriteResult, UnitStatus, FileChange), and WriteThen, a write with a command
// after it in one round trip where the host can. Start at Host. Package host implements
// it over SSH and locally and re-exports every name; pure packages (plan, lb, unitfile,
// certs, the facts packages) name this one so they build without SSH or D-Bus.
package machine
