package runner

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
)

// clusterAPI is what the executors use of the cluster: its hosts, etcd, the Kubernetes API
// and the inventory. observe.Cluster is the real one; the executors' unit tests give fakes
// and real loopback components.
type clusterAPI interface {
	Host(ctx context.Context, name string) (host.Host, error)
	Etcd(ctx context.Context) (*etcd.Client, error)
	EtcdKV(ctx context.Context) (*clientv3.Client, error)
	Kube() (kubernetes.Interface, *rest.Config, error)
	Inventory() *inventory.Inventory
}
