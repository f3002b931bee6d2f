package etcd_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/testenv/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func tlsFiles(t testing.TB, c *etcdtest.Cluster) etcd.TLSFiles {
	t.Helper()
	p := c.TLS()
	var f etcd.TLSFiles
	for dst, path := range map[*[]byte]string{&f.CA: p.CA, &f.Cert: p.Cert, &f.Key: p.Key} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		*dst = b
	}
	return f
}

func dial(t testing.TB, c *etcdtest.Cluster, endpoints ...string) *etcd.Client {
	t.Helper()
	if len(endpoints) == 0 {
		endpoints = c.Endpoints()
	}
	cli, err := etcd.Dial(testCtx(t, 30*time.Second), endpoints, tlsFiles(t, c), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func observe(t testing.TB, cli *etcd.Client) etcd.Facts {
	t.Helper()
	f, err := cli.Observe(testCtx(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// memberIDs lists the IDs a member itself knows (serializable, so it works without quorum).
func memberIDs(t testing.TB, cli *clientv3.Client) []uint64 {
	t.Helper()
	resp, err := cli.MemberList(testCtx(t, 10*time.Second), clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, m := range resp.Members {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids
}

// membersKept notes the member list cli's member knows now; the returned check fails the test
// when it has changed since, as a refused removal must leave it.
func membersKept(t testing.TB, cli *clientv3.Client) (check func()) {
	before := memberIDs(t, cli)
	return func() {
		t.Helper()
		if after := memberIDs(t, cli); !slices.Equal(before, after) {
			t.Fatalf("member list changed by a refused removal: %x -> %x", before, after)
		}
	}
}

func memberIndex(t testing.TB, c *etcdtest.Cluster, f etcd.Facts, id uint64) int {
	t.Helper()
	m, ok := f.Member(id)
	if !ok {
		t.Fatalf("member %x not in facts", id)
	}
	return c.Index(m.Name)
}

// follower is the first member that does not lead (the zero Member when there is none).
func follower(f etcd.Facts) etcd.Member {
	for _, m := range f.Members {
		if !m.IsLeader {
			return m
		}
	}
	return etcd.Member{}
}

func idByName(t testing.TB, f etcd.Facts, name string) uint64 {
	t.Helper()
	m, ok := f.MemberByName(name)
	if !ok {
		t.Fatalf("member %s not in facts", name)
	}
	return m.ID
}

func wantRefusal(t testing.TB, err, kind error) {
	t.Helper()
	var r *etcd.RefusalError
	if !errors.As(err, &r) || !errors.Is(err, kind) {
		t.Fatalf("got %v, want a refusal of kind %v", err, kind)
	}
	if r.Reason == "" || r.WayOut == "" {
		t.Fatalf("refusal %q lacks a reason or a way out", err)
	}
}
