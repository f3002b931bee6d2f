package seed

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/testenv/etcdtest"
)

func TestWriteAndCheckKeys(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const n = 2500 // more than two check pages and many transactions
	if err := WriteKeys(ctx, cli, "/seed/", n); err != nil {
		t.Fatal(err)
	}
	// Neighbours that share the prefix's text must not confuse the check.
	if _, err := cli.Put(ctx, "/seed/zzz", "other"); err != nil {
		t.Fatal(err)
	}
	if err := CheckKeys(ctx, cli, "/seed/", n); err != nil {
		t.Fatalf("all keys written, check says: %v", err)
	}
	if err := CheckKeys(ctx, cli, "/seed/", n+2); err == nil ||
		!strings.Contains(err.Error(), "2 of 2502 keys missing") || !strings.Contains(err.Error(), Key("/seed/", n)) {
		t.Fatalf("check of 2 keys never written: %v", err)
	}

	for _, i := range []int{0, 1500, n - 1} {
		if _, err := cli.Delete(ctx, Key("/seed/", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Put(ctx, Key("/seed/", 7), Value("/seed/", 8, DefaultValueSize)); err != nil {
		t.Fatal(err)
	}
	err := CheckKeys(ctx, cli, "/seed/", n)
	if err == nil {
		t.Fatal("check passed with 3 keys deleted and 1 changed")
	}
	for _, want := range []string{
		"3 of 2500 keys missing", Key("/seed/", 0), Key("/seed/", 1500), Key("/seed/", n-1),
		"1 of 2500 keys with a wrong value", Key("/seed/", 7),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestValueSize(t *testing.T) {
	for _, size := range []int{1, 64, 8192} {
		v := Value("/p/", 3, size)
		if size > 20 && len(v) != size {
			t.Errorf("Value of size %d has %d bytes", size, len(v))
		}
		if !strings.HasPrefix(v, Key("/p/", 3)) {
			t.Errorf("Value %q does not name its key", v[:min(len(v), 30)])
		}
	}
}
