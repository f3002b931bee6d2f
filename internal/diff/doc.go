// Package diff renders small, correct unified diffs of text files for plans and reviews.
package diff
