package apiserverfacts

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mastershrink/mastershrink/unitfile"
)

// ParseFlags reads the flags mastershrink reasons about from a component's unit.
func ParseFlags(u *unitfile.Unit) (Flags, error) {
	var f Flags
	get := func(name string) string {
		fl, _ := u.Flag(name)
		return fl.Value
	}
	if v := get("--etcd-servers"); v != "" {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				f.EtcdServers = append(f.EtcdServers, s)
			}
		}
	}
	if err := parseFlag(get, "--apiserver-count", strconv.Atoi, &f.APIServerCount); err != nil {
		return f, err
	}
	if err := parseFlag(get, "--secure-port", strconv.Atoi, &f.SecurePort); err != nil {
		return f, err
	}
	if err := parseFlag(get, "--request-timeout", time.ParseDuration, &f.RequestTimeout); err != nil {
		return f, err
	}
	f.AdvertiseAddress = get("--advertise-address")
	f.BindAddress = get("--bind-address")
	f.TLSCertFile = get("--tls-cert-file")
	f.TLSPrivateKey = get("--tls-private-key-file")
	f.ClientCAFile = get("--client-ca-file")
	f.EtcdCertFile = get("--etcd-certfile")
	f.EtcdKeyFile = get("--etcd-keyfile")
	f.EtcdCAFile = get("--etcd-cafile")
	f.Kubeconfig = get("--kubeconfig")
	f.AuthnKubeconfig = get("--authentication-kubeconfig")
	f.AuthzKubeconfig = get("--authorization-kubeconfig")
	f.Config = get("--config")
	f.Master = get("--master")
	return f, nil
}

// parseFlag sets *dst to the flag's value as parse reads it, leaving it as it is when the
// flag is not given; a value that does not parse is an error naming the flag.
func parseFlag[T any](get func(name string) string, name string, parse func(string) (T, error), dst *T) error {
	v := get(name)
	if v == "" {
		return nil
	}
	x, err := parse(v)
	if err != nil {
		return fmt.Errorf("%s=%q: %w", name, v, err)
	}
	*dst = x
	return nil
}

// KubeconfigServers finds clusters[].cluster.server with their positions, so an edit can
// replace just that scalar.
func KubeconfigServers(content string) ([]KubeconfigServer, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(content), &doc); err != nil {
		return nil, fmt.Errorf("parse kubeconfig: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	clusters := mapValue(doc.Content[0], "clusters")
	if clusters == nil || clusters.Kind != yaml.SequenceNode {
		return nil, nil
	}
	var out []KubeconfigServer
	for _, item := range clusters.Content {
		name := ""
		if n := mapValue(item, "name"); n != nil {
			name = n.Value
		}
		cl := mapValue(item, "cluster")
		if cl == nil {
			continue
		}
		if s := mapValue(cl, "server"); s != nil && s.Kind == yaml.ScalarNode {
			out = append(out, KubeconfigServer{Cluster: name, Server: s.Value, Line: s.Line, Column: s.Column})
		}
	}
	return out, nil
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
