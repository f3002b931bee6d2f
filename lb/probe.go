package lb

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/mastershrink/mastershrink/host/machine"
)

// ProbePath is what Probe asks for.
const ProbePath = "/readyz"

// Probe asks an apiserver for /readyz through the node's proxy at listen, dialing from the
// node itself (h.DialContext). It succeeds on 200, and also on 401 and 403: those come from an
// apiserver that completed TLS and read the request through the proxy, which is what this
// probe proves (the cluster may disable anonymous access; readiness of each survivor is
// checked with credentials elsewhere). With a nil tlsConfig the server certificate is not
// verified: the probe sends no secret, so there is nothing to protect, and the node's proxy
// address (127.0.0.1) is often missing from the apiserver certificate.
func Probe(ctx context.Context, h machine.Host, listen string, tlsConfig *tls.Config) error {
	if listen == "" {
		return fmt.Errorf("probe %s: no proxy listen address", h.Name())
	}
	if tlsConfig == nil {
		tlsConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // see the doc comment
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return h.DialContext(ctx, network, addr)
		},
		TLSClientConfig:   tlsConfig,
		DisableKeepAlives: true,
		ForceAttemptHTTP2: false,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "https://" + listen + ProbePath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe %s via %s: %w", h.Name(), listen, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s via %s: %w", h.Name(), listen, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch resp.StatusCode {
	case http.StatusOK, http.StatusUnauthorized, http.StatusForbidden:
		return nil
	}
	return fmt.Errorf("probe %s via %s: GET %s: %s: %s", h.Name(), listen, ProbePath, resp.Status, strings.TrimSpace(string(body)))
}
