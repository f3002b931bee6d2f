// Package etcdtest is the fast test tier's etcd: a real multi-member TLS cluster of etcd
// processes on loopback addresses, ready in seconds, with members that can be stopped, killed
// and restarted one at a time.
package etcdtest
