package runner

import clientv3 "go.etcd.io/etcd/client/v3"

func clientv3WithLease(id clientv3.LeaseID) clientv3.OpOption { return clientv3.WithLease(id) }
