// Package unitfile reads the command-line flags of a systemd service (fragment, drop-ins,
// Environment= and EnvironmentFile= variables) and rewrites one flag's value in place,
// leaving every other byte of the files as it was. It reads hosts through host/machine only,
// so the planner can use Unit without SSH or D-Bus.
package unitfile
