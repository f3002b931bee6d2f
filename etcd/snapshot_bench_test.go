package etcd_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/testenv/etcdtest"
	"github.com/mastershrink/mastershrink/testenv/seed"
)

// BenchmarkSnapshotVsEtcdctl streams a snapshot of a large keyspace from the leader of a
// 3-member TLS cluster, with Snapshot (verified as it is written: sha256 trailer and bbolt
// pages alongside the write, bbolt's check and the key count alongside the fsync) and with
// `etcdctl snapshot save` (written and fsynced, not verified), alternating who goes first,
// and reports both throughputs and their ratio (above 1: Snapshot is faster).
// MASTERSHRINK_BENCH_ETCD_MB sets the keyspace size (default 64 here; make bench sets 1024):
//
//	MASTERSHRINK_BENCH_ETCD_MB=1024 go test -run '^$' -bench SnapshotVsEtcdctl -benchtime 3x ./etcd/
func BenchmarkSnapshotVsEtcdctl(b *testing.B) {
	mb := 64
	if v := os.Getenv("MASTERSHRINK_BENCH_ETCD_MB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("MASTERSHRINK_BENCH_ETCD_MB=%q: want a positive number of MiB", v)
		}
		mb = n
	}
	c := etcdtest.Start(b, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	const valueSize = 8 << 10
	start := time.Now()
	if err := seed.WriteSizedKeys(ctx, c.Client(b), "/bench/", mb<<20/valueSize, valueSize); err != nil {
		b.Fatal(err)
	}
	b.Logf("wrote %d MiB in %s", mb, time.Since(start).Round(time.Millisecond))

	cli := dial(b, c)
	f := observe(b, cli)
	leader, ok := f.Leader()
	if !ok {
		b.Fatal("no leader")
	}
	tlsp := c.TLS()
	dir := filepath.Join(b.TempDir(), "snapshots") // a folder of its own, made 0700, as Snapshot requires
	var ours, theirs time.Duration
	var oursBytes, theirBytes int64

	runOurs := func() {
		t0 := time.Now()
		info, err := cli.Snapshot(ctx, dir, nil)
		if err != nil {
			b.Fatal(err)
		}
		ours += time.Since(t0)
		oursBytes += info.Size
		os.Remove(info.Path)
	}
	runEtcdctl := func() {
		path := filepath.Join(dir, "etcdctl.db")
		cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir(), "etcdctl"),
			"--endpoints", leader.ClientURLs[0], "--cacert", tlsp.CA, "--cert", tlsp.Cert, "--key", tlsp.Key,
			"snapshot", "save", path)
		cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("etcdctl snapshot save: %v\n%s", err, out)
		}
		theirs += time.Since(t0)
		fi, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		theirBytes += fi.Size()
		os.Remove(path)
	}

	i := 0
	for b.Loop() {
		// Alternate who goes first, so neither always meets the colder cache.
		if i%2 == 0 {
			runOurs()
			runEtcdctl()
		} else {
			runEtcdctl()
			runOurs()
		}
		i++
	}
	oursRate := float64(oursBytes) / 1e6 / ours.Seconds()
	theirRate := float64(theirBytes) / 1e6 / theirs.Seconds()
	b.ReportMetric(oursRate, "MB/s-mastershrink")
	b.ReportMetric(theirRate, "MB/s-etcdctl")
	b.ReportMetric(oursRate/theirRate, "ratio")
	b.ReportMetric(float64(oursBytes)/float64(i)/1e6, "MB/snapshot")
}
