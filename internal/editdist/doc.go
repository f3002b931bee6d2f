// Package editdist measures how far a mistyped word is from the ones meant, for the "did you
// mean" of flags, subcommands, inventory keys and host names. Start with Distance.
package editdist
