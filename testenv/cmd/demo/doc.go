// Command demo is `make demo`: it brings up the lab, shrinks its control plane from three
// masters to one with `mastershrink plan` and `mastershrink apply` while an availability prober
// runs, and shows the cluster before and after.
package main
