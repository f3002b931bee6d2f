// Command lab brings the mastershrink lab up and down: `lab up|status|exec HOST -- CMD|down`.
package main
