package lb

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// ErrNoAPIServer is a proxy configuration in which no stream upstream fronts an apiserver:
// the inventory names the wrong file, or the upstream lists other servers only.
var ErrNoAPIServer = errors.New("no stream upstream fronts an apiserver")

// NoAPIServerError names the node and main configuration file of a proxy that fronts no
// apiserver, and what the file holds instead.
type NoAPIServerError struct {
	Node, File string
	// Kind is the proxy's (NodeConfig.Kind).
	Kind string
	// Found says what the configuration holds instead: "no stream block" or the stream
	// upstreams it has ("upstream registry at /etc/nginx/nginx.conf:7").
	Found string
}

func (e *NoAPIServerError) Error() string {
	if e.Kind == KindHAProxy {
		return fmt.Sprintf("%s: %s: no haproxy backend fronts an apiserver (%s): point haproxy_config at the haproxy config that fronts the apiservers, or list them as servers of its backend", e.Node, e.File, e.Found)
	}
	return fmt.Sprintf("%s: %s: %v (%s): point nginx_config at the proxy config that fronts the apiservers, or list them in its stream upstream", e.Node, e.File, ErrNoAPIServer, e.Found)
}

func (e *NoAPIServerError) Unwrap() error { return ErrNoAPIServer }

// RequireAPIServer returns a *NoAPIServerError when cfg has no upstream fronting one of the
// apiservers Parse was given. Parse itself accepts such a config, since a caller asking about
// one apiserver may meet a proxy that does not front that one; a caller that expects the
// node's proxy in front of the apiservers checks with this.
func RequireAPIServer(cfg NodeConfig) error {
	if len(cfg.Upstreams) > 0 {
		return nil
	}
	if cfg.Kind == KindHAProxy {
		return &NoAPIServerError{Node: cfg.Host, File: cfg.Main, Kind: cfg.Kind, Found: describeHAProxy(cfg)}
	}
	return &NoAPIServerError{Node: cfg.Host, File: cfg.Main, Found: describeStream(cfg)}
}

// describeStream says what stream upstreams cfg has, for the message: the files were
// parsed once already, so errors here cannot happen and only shorten the description.
func describeStream(cfg NodeConfig) string {
	r := &resolver{files: cfg.Files, confDir: path.Dir(cfg.Main), parsed: map[string][]*stmt{}}
	top, err := r.file(cfg.Main, 0)
	if err != nil {
		return "no stream upstream found"
	}
	streams := 0
	var ups []string
	var walk func(stmts []*stmt, ctx []string)
	walk = func(stmts []*stmt, ctx []string) {
		inStream := len(ctx) == 1 && ctx[0] == "stream"
		for _, s := range stmts {
			if len(ctx) == 0 && s.name.val == "stream" && s.hasBlock() {
				streams++
			}
			if inStream && s.name.val == "upstream" && s.hasBlock() && len(s.args) == 1 {
				ups = append(ups, fmt.Sprintf("upstream %s at %s:%d", s.args[0].val, s.file, s.name.line))
				continue
			}
			if s.hasBlock() {
				walk(s.block, append(slices.Clip(ctx), s.name.val))
			}
		}
	}
	walk(top, nil)
	switch {
	case streams == 0:
		return "no stream block: mastershrink edits nginx stream proxies only"
	case len(ups) == 0:
		return "no upstream in its stream block"
	case len(ups) > 3:
		ups = append(ups[:3], fmt.Sprintf("%d more", len(ups)-3))
	}
	return "its stream " + strings.Join(ups, ", ") + " lists none of the apiservers"
}
