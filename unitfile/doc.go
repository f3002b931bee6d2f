// Package unitfile reads the command-line flags of a systemd service (fragment, drop-ins,
// Environment= and EnvironmentFile= variables) and rewrites one flag's value in place,
// leaving every other byte of the files as it was.
package unitfile
