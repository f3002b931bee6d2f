package host

import "github.com/mastershrink/mastershrink/host/machine"

// The contract of a host lives in package machine, free of SSH and D-Bus, so pure packages
// can name it; these aliases keep host.Host and its values where the callers look for them.
type (
	// Host is one machine of the cluster, reached over SSH or locally (see machine.Host).
	Host = machine.Host
	// Result is the outcome of a command.
	Result = machine.Result
	// CmdError is a command that ran and exited non-zero.
	CmdError = machine.CmdError
	// FileInfo describes a file on a host.
	FileInfo = machine.FileInfo
	// WriteOptions control WriteFile.
	WriteOptions = machine.WriteOptions
	// WriteResult reports what WriteFile did.
	WriteResult = machine.WriteResult
	// UnitStatus is what systemd says of a unit.
	UnitStatus = machine.UnitStatus
	// ThenResult is what the command run after a write gave (machine.WriteThen).
	ThenResult = machine.ThenResult
	// Systemd controls the units of one host.
	Systemd = machine.Systemd
	// FileChange is a planned rewrite of one file on one host.
	FileChange = machine.FileChange
)
