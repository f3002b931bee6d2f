// Package certs turns cluster certificates into plain facts and cfssl CSR requests, re-signs
// them with the cluster CA (github.com/cloudflare/cfssl, in-process) without the removed
// addresses, verifies the result, and installs it on a host.
package certs
