package etcd_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/testenv/etcdtest"
)

// Each endpoint's own cause: one answers, one is stopped, and against another cluster's CA
// every certificate is named as the problem.
func TestDiagnose(t *testing.T) {
	c := etcdtest.Start(t, 2)
	other := etcdtest.Start(t, 1)
	if err := c.Stop(1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := etcd.Diagnose(ctx, c.Endpoints(), tlsFiles(t, c), nil)
	if len(got) != 2 || !strings.Contains(got[0], "TLS works") || !strings.Contains(got[1], "cannot connect") {
		t.Errorf("diagnosis: %q", got)
	}
	wrongCA := tlsFiles(t, c)
	wrongCA.CA = tlsFiles(t, other).CA
	got = etcd.Diagnose(ctx, c.Endpoints()[:1], wrongCA, nil)
	if len(got) != 1 || !strings.Contains(got[0], "not signed by the etcd CA given") {
		t.Errorf("diagnosis with another CA: %q", got)
	}
	wrongClient := tlsFiles(t, other)
	wrongClient.CA = tlsFiles(t, c).CA
	got = etcd.Diagnose(ctx, c.Endpoints()[:1], wrongClient, nil)
	if len(got) != 1 || !strings.Contains(got[0], "refused our client certificate") {
		t.Errorf("diagnosis with another cluster's client certificate: %q", got)
	}
}
