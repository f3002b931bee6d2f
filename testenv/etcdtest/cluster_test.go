package etcdtest

import (
	"context"
	"testing"
	"time"
)

func TestClusterStopStart(t *testing.T) {
	c := Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cli := c.Client(t)
	resp, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Members) != 3 {
		t.Fatalf("member list has %d members, want 3", len(resp.Members))
	}
	for i := 0; i < 3; i++ {
		if want := "127.0.0." + string(rune('1'+i)); c.IP(i) != want {
			t.Errorf("member %d on %s, want %s", i, c.IP(i), want)
		}
	}
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}

	if err := c.Stop(1); err != nil {
		t.Fatal(err)
	}
	if c.Running(1) {
		t.Fatal("member 1 still running after Stop")
	}
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = cli.Status(sctx, c.Endpoint(1))
	scancel()
	if err == nil {
		t.Fatal("stopped member answered a status request")
	}
	if err := c.Start(1); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitMember(ctx, 1); err != nil {
		t.Fatal(err)
	}
	one := c.Client(t, 1)
	got, err := one.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "v" {
		t.Fatalf("restarted member returned %v, want k=v", got.Kvs)
	}
}
