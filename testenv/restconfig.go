package testenv

import (
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RESTConfig is the admin kubeconfig as a client-go config whose sockets are made inside the
// lab namespace; server overrides the kubeconfig's (m1's apiserver) when not empty.
func (l *Lab) RESTConfig(server string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags(server, l.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("lab %s kubeconfig: %w", l.Name, err)
	}
	cfg.Dial = l.DialContext
	return cfg, nil
}

// WorkerRESTConfig is the admin config pointed at worker's local proxy, with sockets made in
// the worker's namespace: requests take the path a kubelet's take.
func (l *Lab) WorkerRESTConfig(worker string) (*rest.Config, error) {
	m, ok := l.Machine(worker)
	if !ok {
		return nil, fmt.Errorf("lab %s: no machine %s", l.Name, worker)
	}
	lay, _ := LookupLayout(l.Layout)
	cfg, err := l.RESTConfig(lay.localProxyURL())
	if err != nil {
		return nil, err
	}
	cfg.Dial = DialerIn(m.NetNS)
	if _, err := os.Stat(m.NetNS); err != nil {
		return nil, fmt.Errorf("lab %s machine %s netns: %w", l.Name, worker, err)
	}
	return cfg, nil
}
