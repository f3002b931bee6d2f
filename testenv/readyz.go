package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// WaitReadyz polls GET url (an apiserver's or a proxy's /readyz) every half second, with the
// admin certificate and sockets made by dial, until it answers 200. When ctx ends first it
// returns the last request's error, which says more than the deadline does.
func (l *Lab) WaitReadyz(ctx context.Context, url string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) error {
	hc, err := l.HTTPClient(dial)
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	for {
		code, _, err := get(ctx, hc, url)
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("HTTP %d", code)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}
