//go:build tools

// Package tools pins the project's dependencies before every package imports them.
package tools

import (
	_ "github.com/cloudflare/cfssl/signer/local"
	_ "github.com/coreos/go-systemd/v22/dbus"
	_ "github.com/coreos/go-systemd/v22/unit"
	_ "github.com/godbus/dbus/v5"
	_ "github.com/spf13/cobra"
	_ "github.com/tufanbarisyildirim/gonginx/parser"
	_ "go.etcd.io/etcd/client/pkg/v3/transport"
	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/server/v3/embed"
	_ "golang.org/x/crypto/ssh"
	_ "golang.org/x/crypto/ssh/agent"
	_ "golang.org/x/crypto/ssh/knownhosts"
	_ "gopkg.in/yaml.v3"
	_ "k8s.io/api/policy/v1"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/tools/clientcmd"
)
