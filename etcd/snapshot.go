package etcd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mastershrink/mastershrink/internal/heartbeat"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	grpcencoding "google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// ErrSnapshotCorrupt means a snapshot file failed verification.
var ErrSnapshotCorrupt = errors.New("etcd snapshot corrupt")

// ErrSnapshotDirNotPrivate is a snapshot folder others could read or replace: a symbolic
// link, not ours, or open to group or others.
var ErrSnapshotDirNotPrivate = errors.New("the snapshot folder is not private")

// SnapshotHolds is what to tell the operator wherever a snapshot's path is shown.
const SnapshotHolds = "it contains every Secret of the cluster: keep it private, and delete it once it is no longer needed"

// progressInterval is how often Snapshot reports its progress.
var progressInterval = 10 * time.Second

// snapshotStall aborts a snapshot stream that has delivered nothing for this long.
var snapshotStall = 2 * time.Minute

// SnapshotInfo describes a verified snapshot file.
type SnapshotInfo struct {
	Path string
	Size int64
	// SHA256 is the hex digest of the whole file, as sha256sum prints it.
	SHA256 string
	// Revision is the store's revision in the snapshot.
	Revision int64
	// Keys is the number of live keys at Revision.
	Keys int64
	// TotalKeys counts every entry of every bucket, as etcdutl snapshot status does.
	TotalKeys int64
	ClusterID uint64
	// Leader is the member the snapshot was streamed from.
	Leader     uint64
	LeaderName string
	// Version is the storage version the server reported (etcd 3.6 and later).
	Version  string
	TakenAt  time.Time
	Duration time.Duration
}

type snapshotInfoJSON struct {
	Path       string  `json:"path"`
	Size       int64   `json:"size"`
	SHA256     string  `json:"sha256"`
	Revision   int64   `json:"revision"`
	Keys       int64   `json:"keys"`
	TotalKeys  int64   `json:"total_keys"`
	ClusterID  string  `json:"cluster_id"`
	Leader     string  `json:"leader"`
	LeaderName string  `json:"leader_name"`
	Version    string  `json:"version,omitempty"`
	TakenAt    string  `json:"taken_at"`
	Seconds    float64 `json:"seconds"`
}

// MarshalJSON writes IDs in hex and the time in RFC 3339 UTC.
func (s SnapshotInfo) MarshalJSON() ([]byte, error) {
	return json.Marshal(snapshotInfoJSON{
		Path: s.Path, Size: s.Size, SHA256: s.SHA256, Revision: s.Revision, Keys: s.Keys,
		TotalKeys: s.TotalKeys, ClusterID: FormatID(s.ClusterID), Leader: FormatID(s.Leader),
		LeaderName: s.LeaderName, Version: s.Version, TakenAt: s.TakenAt.UTC().Format(time.RFC3339),
		Seconds: s.Duration.Seconds(),
	})
}

// Snapshot streams a snapshot from the leader into dir, which EnsureSnapshotDir makes or
// checks first (0700, ours, not a link). The stream is written to NAME.part (0600) and
// checked as it is written (etcd's trailing sha256 of the content, and the bbolt pages as they
// pass), then the bbolt file itself (bbolt's check, revision, keys) while it is fsynced, and
// renamed (saveSnapshot); a file that fails any check is removed. Progress lines go to
// progress (may be nil) about every 10 s.
func (c *Client) Snapshot(ctx context.Context, dir string, progress io.Writer) (SnapshotInfo, error) {
	if err := EnsureSnapshotDir(dir); err != nil {
		return SnapshotInfo{}, err
	}
	f, err := c.Observe(ctx)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot: %w", err)
	}
	leader, ok := f.Leader()
	if !ok {
		return SnapshotInfo{}, fmt.Errorf("snapshot of cluster %x: no leader", f.ClusterID)
	}
	if !leader.Healthy || len(leader.ClientURLs) == 0 {
		return SnapshotInfo{}, fmt.Errorf("snapshot from leader %s (%x): not healthy: %s", leader.Name, leader.ID, leader.Error)
	}
	ep := leader.ClientURLs[0]
	cli, err := c.snapshotClient(ep)
	if err != nil {
		return SnapshotInfo{}, err
	}
	defer cli.Close()
	start := time.Now()
	info := SnapshotInfo{ClusterID: f.ClusterID, Leader: leader.ID, LeaderName: leader.Name, TakenAt: start.UTC()}
	name := fmt.Sprintf("etcd-snapshot-%x-%s-%s.db", f.ClusterID, sanitize(leader.Name), start.UTC().Format("20060102T150405Z"))
	info.Path = filepath.Join(dir, name)
	part := info.Path + ".part"
	if _, err := os.Stat(info.Path); err == nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot %s: %w", info.Path, os.ErrExist)
	}

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	resp, err := cli.SnapshotWithVersion(sctx)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot from leader %s at %s: %w", leader.Name, ep, err)
	}
	defer resp.Snapshot.Close()
	info.Version = resp.Version

	var received atomic.Int64
	stop := watch(sctx, cancel, &received, start, progress, leader.Name)
	n, sum, st, err := saveSnapshot(resp.Snapshot, part, info.Path, counter{&received})
	stop()
	if se := (*streamError)(nil); errors.As(err, &se) {
		err = se.err
		if cause := context.Cause(sctx); cause != nil && !errors.Is(cause, ctx.Err()) {
			err = cause
		}
		return SnapshotInfo{}, fmt.Errorf("snapshot from leader %s at %s after %d bytes: %w", leader.Name, ep, n, err)
	}
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot from leader %s: %w", leader.Name, err)
	}
	info.Size, info.SHA256 = n, sum
	info.Revision, info.Keys, info.TotalKeys = st.revision, st.keys, st.totalKeys
	if err := syncDir(dir); err != nil {
		return SnapshotInfo{}, err
	}
	info.Duration = time.Since(start)
	if progress != nil {
		fmt.Fprintf(progress, "snapshot from %s: %s, revision %d, %d keys, %s in %s (%s/s), sha256 %s\n",
			leader.Name, info.Path, info.Revision, info.Keys, humanBytes(n), info.Duration.Round(time.Millisecond),
			humanBytes(int64(float64(n)/info.Duration.Seconds())), info.SHA256)
		fmt.Fprintf(progress, "snapshot %s (mode 0600 in a 0700 folder): %s\n", info.Path, SnapshotHolds)
	}
	return info, nil
}

// snapshotCodec is gRPC's proto codec for the snapshot stream, with the received bytes in
// buffers of snapshotPool. gRPC's own codec takes them from its default pool, whose tiers are
// 32 KiB and then 1 MiB; etcd sends the database in 32 KiB chunks, a little over 32 KiB per
// message, so each message took a 1 MiB buffer, cleared whole first: 32 times the snapshot's
// size in memory writes, about a second of CPU per GiB, which etcdctl (an older gRPC) does not
// spend. proto.Unmarshal copies the chunk out of the buffer.
type snapshotCodec struct{}

func (snapshotCodec) Name() string { return "proto" }

func (snapshotCodec) Marshal(v any) (mem.BufferSlice, error) {
	return grpcencoding.GetCodecV2("proto").Marshal(v)
}

func (snapshotCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return grpcencoding.GetCodecV2("proto").Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(snapshotPool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// snapshotPool hands out reused buffers as they are: whoever gets one overwrites every byte
// it asked for (MaterializeToBuffer copies the message in), so nothing is cleared first.
var snapshotPool mem.BufferPool = &reusePool{}

type reusePool struct{ p sync.Pool }

func (r *reusePool) Get(n int) *[]byte {
	if b, ok := r.p.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, max(n, 64<<10))
	return &b
}

func (r *reusePool) Put(b *[]byte) { r.p.Put(b) }

// snapshotClient is a client of ep alone, as member gives, for one snapshot stream (closed
// after it), with snapshotCodec.
func (c *Client) snapshotClient(ep string) (*clientv3.Client, error) {
	return c.newClientWith([]grpc.DialOption{grpc.WithDefaultCallOptions(grpc.ForceCodecV2(snapshotCodec{}))}, ep)
}

// watch prints progress and cancels a stream that stalls; the returned func stops it. ctx
// is the stream's, which cancel ends.
func watch(ctx context.Context, cancel context.CancelCauseFunc, received *atomic.Int64, start time.Time, progress io.Writer, from string) func() {
	lastReport := start
	lastBytes, lastChange := int64(0), start
	return heartbeat.Start(ctx, min(progressInterval, snapshotStall/4), func(time.Duration) {
		now := time.Now()
		n := received.Load()
		if n != lastBytes {
			lastBytes, lastChange = n, now
		} else if now.Sub(lastChange) >= snapshotStall {
			cancel(fmt.Errorf("snapshot stream from %s stalled: no data for %s", from, snapshotStall))
			return
		}
		if progress != nil && now.Sub(lastReport) >= progressInterval {
			lastReport = now
			elapsed := now.Sub(start)
			fmt.Fprintf(progress, "snapshot from %s: %s received [%s elapsed, %s/s]\n",
				from, humanBytes(n), elapsed.Round(time.Second), humanBytes(int64(float64(n)/elapsed.Seconds())))
		}
	})
}

// streamError is a failure to read the snapshot stream, as opposed to a failure of the file
// or of a check.
type streamError struct{ err error }

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// saveSnapshot writes the snapshot stream src to part (made 0600; never a file that is there
// already, nor through a link), checks it as the bytes pass, fsyncs it while bbolt checks its
// pages, and renames it to path. On any failure part is removed and nothing is at path. A
// failure to read src is a *streamError, n the bytes written before it; count sees every
// chunk once written.
func saveSnapshot(src io.Reader, part, path string, count io.Writer) (n int64, sum string, st boltStats, err error) {
	out, err := os.OpenFile(part, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, "", st, fmt.Errorf("snapshot file: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			out.Close()
			os.Remove(part)
		}
	}()
	// The umask can only take bits away, but a file left by an earlier crash cannot be here
	// (O_EXCL): the mode is the one asked, and set again in case of an odd umask.
	if err := out.Chmod(0o600); err != nil {
		return 0, "", st, fmt.Errorf("snapshot file: %w", err)
	}
	// The checks run alongside the write: every chunk written to the file goes on to a
	// goroutine that hashes it and reads the bbolt pages in it as they pass (snapshotCheck),
	// so when the last byte is written, the trailer is checked and the page tree is known.
	check := newSnapshotCheck()
	n, err = teeCopy(out, check, count, src)
	if err != nil {
		return n, "", st, err
	}
	if err := check.content.check(); err != nil {
		return n, "", st, err
	}
	// What is left of the check reads the file's page tree from the page cache (bbolt's own
	// check and the key count); it runs while the file is fsynced, and both must pass.
	synced := make(chan error, 1)
	go func() { synced <- out.Sync() }()
	st, err = inspectBolt(part, check.pages)
	if serr := <-synced; serr != nil {
		return n, "", st, fmt.Errorf("fsync %s: %w", part, serr)
	}
	if err != nil {
		return n, "", st, err
	}
	if err := out.Close(); err != nil {
		return n, "", st, fmt.Errorf("close %s: %w", part, err)
	}
	if err := os.Rename(part, path); err != nil {
		return n, "", st, fmt.Errorf("snapshot %s: %w", path, err)
	}
	keep = true
	return n, check.content.fileSum(), st, nil
}

// snapshotCheck is what Snapshot and VerifySnapshot check as the bytes pass: etcd's sha256
// trailer and the bbolt pages.
type snapshotCheck struct {
	content *trailerHash
	pages   *pageScan
}

func newSnapshotCheck() *snapshotCheck {
	return &snapshotCheck{content: newTrailerHash(), pages: newPageScan()}
}

func (c *snapshotCheck) Write(p []byte) (int, error) {
	c.content.Write(p)
	c.pages.Write(p)
	return len(p), nil
}

// teeChunk is the size of the chunks teeCopy hands from the writer to the checker.
const teeChunk = 1 << 20

// teeCopy copies src to dst and gives every chunk, once written, to check on a goroutine of
// its own (and to count), so the file's writes and the checks run side by side; it returns
// when both are done with the last byte. Neither writer can fail but dst; a failure to read
// src is a *streamError.
func teeCopy(dst io.Writer, check, count io.Writer, src io.Reader) (int64, error) {
	const depth = 8
	free := make(chan []byte, depth)
	for range depth {
		free <- make([]byte, teeChunk)
	}
	full := make(chan []byte, depth)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range full {
			check.Write(b)
			free <- b[:cap(b)]
		}
	}()
	var n int64
	var err error
	for {
		buf := <-free
		// Fill the chunk (a gRPC stream hands over its messages' bytes a piece at a time).
		k, rerr := io.ReadAtLeast(src, buf, len(buf))
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				err = werr
				break
			}
			n += int64(k)
			count.Write(buf[:k])
			full <- buf[:k]
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			err = &streamError{rerr}
			break
		}
	}
	close(full)
	<-done
	return n, err
}

type counter struct{ n *atomic.Int64 }

func (c counter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}

// trailerHash hashes everything but the last 32 bytes seen, which etcd fills with the sha256
// of what came before.
type trailerHash struct {
	h    hash.Hash
	tail []byte
}

func newTrailerHash() *trailerHash { return &trailerHash{h: sha256.New()} }

func (t *trailerHash) Write(p []byte) (int, error) {
	n := len(p)
	if len(t.tail)+len(p) <= sha256.Size {
		t.tail = append(t.tail, p...)
		return n, nil
	}
	// Hash whatever drops out of the 32-byte window.
	out := len(t.tail) + len(p) - sha256.Size
	if out >= len(t.tail) {
		t.h.Write(t.tail)
		t.h.Write(p[:out-len(t.tail)])
		t.tail = append(t.tail[:0], p[out-len(t.tail):]...)
		return n, nil
	}
	t.h.Write(t.tail[:out])
	var window [sha256.Size]byte
	k := copy(window[:], t.tail[out:])
	copy(window[k:], p)
	t.tail = append(t.tail[:0], window[:]...)
	return n, nil
}

func (t *trailerHash) check() error {
	if len(t.tail) < sha256.Size {
		return fmt.Errorf("%w: %d bytes, shorter than its checksum", ErrSnapshotCorrupt, len(t.tail))
	}
	if sum := t.h.Sum(nil); !bytes.Equal(sum, t.tail) {
		return fmt.Errorf("%w: content sha256 %x, the snapshot's trailer says %x", ErrSnapshotCorrupt, sum, t.tail)
	}
	return nil
}

// fileSum is the sha256 of the whole file (content and trailer), as sha256sum prints it,
// without hashing the content a second time.
func (t *trailerHash) fileSum() string {
	h := sha256.New()
	if state, err := t.h.(encoding.BinaryMarshaler).MarshalBinary(); err == nil {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err == nil {
			h.Write(t.tail)
			return hex.EncodeToString(h.Sum(nil))
		}
	}
	return "" // unreachable: crypto/sha256 digests marshal their state
}

// VerifySnapshot checks a snapshot file at rest the way Snapshot checks it while streaming, in
// one read of the file: the trailing sha256 of the content and the bbolt pages as they pass,
// then the bbolt structure, revision and keys. Path, Size,
// SHA256, Revision, Keys and TotalKeys are filled.
func VerifySnapshot(path string) (SnapshotInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("verify snapshot: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("verify snapshot: %w", err)
	}
	// etcd's database files are whole pages: 32 bytes past a 512-byte boundary is the trailer.
	if fi.Size()%512 != sha256.Size {
		return SnapshotInfo{}, fmt.Errorf("verify snapshot %s: %w: size %d has no sha256 trailer", path, ErrSnapshotCorrupt, fi.Size())
	}
	check := newSnapshotCheck()
	if _, err := io.CopyBuffer(check, f, make([]byte, teeChunk)); err != nil {
		return SnapshotInfo{}, fmt.Errorf("verify snapshot %s: %w", path, err)
	}
	if err := check.content.check(); err != nil {
		return SnapshotInfo{}, fmt.Errorf("verify snapshot %s: %w", path, err)
	}
	st, err := inspectBolt(path, check.pages)
	if err != nil {
		return SnapshotInfo{}, err
	}
	return SnapshotInfo{
		Path: path, Size: fi.Size(), SHA256: check.content.fileSum(),
		Revision: st.revision, Keys: st.keys, TotalKeys: st.totalKeys,
	}, nil
}

type boltStats struct {
	revision  int64
	keys      int64
	totalKeys int64
}

// inspectBolt opens a snapshot read-only, checks bbolt's structure and counts what it holds.
// boltBounds runs first: bbolt follows page numbers into its memory map unchecked, so a
// damaged file with a valid checksum trailer would crash the process, not return an error.
// scan, when not nil, is the file's pages as they were streamed: the bounds walk then reads
// from it rather than from the file.
func inspectBolt(path string, scan *pageScan) (boltStats, error) {
	var st boltStats
	if err := boltBoundsScan(path, scan); err != nil {
		return st, fmt.Errorf("inspect snapshot %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	if err != nil {
		return st, fmt.Errorf("open snapshot %s: %w: %w", path, ErrSnapshotCorrupt, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		var problems []string
		for e := range tx.Check() {
			if len(problems) < 5 {
				problems = append(problems, e.Error())
			}
		}
		if len(problems) > 0 {
			return fmt.Errorf("%w: bbolt check: %s", ErrSnapshotCorrupt, strings.Join(problems, "; "))
		}
		if tx.Bucket([]byte("key")) == nil || tx.Bucket([]byte("meta")) == nil {
			return fmt.Errorf("%w: no key or meta bucket, not an etcd database", ErrSnapshotCorrupt)
		}
		live := map[string]bool{}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			isKey := string(name) == "key"
			return b.ForEach(func(k, v []byte) error {
				st.totalKeys++
				if !isKey {
					return nil
				}
				// Keys are revisions: 8-byte main, '_', 8-byte sub, and 't' on a tombstone.
				if len(k) < 17 {
					return fmt.Errorf("%w: revision key of %d bytes", ErrSnapshotCorrupt, len(k))
				}
				rev := int64(binary.BigEndian.Uint64(k[:8]))
				if rev > st.revision {
					st.revision = rev
				}
				userKey, err := kvKey(v)
				if err != nil {
					return fmt.Errorf("%w: value at revision %d: %w", ErrSnapshotCorrupt, rev, err)
				}
				tomb := len(k) == 18 && k[17] == 't'
				was := live[string(userKey)]
				switch {
				case tomb && was:
					st.keys--
				case !tomb && !was:
					st.keys++
				}
				live[string(userKey)] = !tomb
				return nil
			})
		})
	})
	if err != nil {
		return st, fmt.Errorf("inspect snapshot %s: %w", path, err)
	}
	return st, nil
}

// bbolt's on-disk layout (go.etcd.io/bbolt internal/common), little-endian as on the
// platforms etcd supports.
const (
	boltMagic          = 0xED0CDAED
	boltVersion        = 2
	boltPageHeader     = 16 // id u64, flags u16, count u16, overflow u32
	boltElementSize    = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	boltBranchPage     = 0x01
	boltLeafPage       = 0x02
	boltFreelistPage   = 0x10
	boltBucketLeaf     = 0x01
	boltNoFreelist     = ^uint64(0)
	boltMaxDepth       = 64
	boltMetaChecksumAt = 56 // bytes of the meta that its FNV-64a checksum covers
)

type boltMeta struct {
	pageSize        uint64
	root, freelist  uint64
	highWater, txid uint64
}

// boltBounds walks the page tree of a bbolt file as bbolt would, with every page number,
// element and key checked against the page and the file, so bbolt itself is only let at a
// file whose references all land inside it. It reads page by page (a snapshot can be GBs).
func boltBounds(path string) error { return boltBoundsScan(path, nil) }

// boltBoundsScan is boltBounds with the pages summarised as the file was streamed (scan may
// be nil): the walk, its order and every check are the same, but a page summarised in the
// stream is not read again. The meta pages, the freelist, and pages the stream could not
// summarise from their first page alone are read from the file; if the stream was unusual
// (see pageScan.fallback) or its meta is not the file's, every page is.
func boltBoundsScan(path string, scan *pageScan) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	w := &boltWalker{f: f, size: fi.Size(), seen: map[uint64]bool{}, scan: scan}
	return w.check()
}

type boltWalker struct {
	f    *os.File
	size int64
	meta boltMeta
	seen map[uint64]bool
	// scan holds the pages summarised while streaming; nil or unusable: read them all.
	scan *pageScan
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: bbolt structure: %s", ErrSnapshotCorrupt, fmt.Sprintf(format, args...))
}

func (w *boltWalker) readAt(off int64, n int) ([]byte, error) {
	if off < 0 || n < 0 || off+int64(n) > w.size {
		return nil, corrupt("%d bytes at offset %d are past the end of the %d-byte file", n, off, w.size)
	}
	b := make([]byte, n)
	if _, err := w.f.ReadAt(b, off); err != nil {
		return nil, err
	}
	return b, nil
}

// readMeta reads the meta page at off; ok is false when it does not validate.
func (w *boltWalker) readMeta(off int64) (boltMeta, bool) {
	b, err := w.readAt(off, boltPageHeader+64)
	if err != nil {
		return boltMeta{}, false
	}
	return parseMeta(b)
}

// parseMeta reads a meta page from its first boltPageHeader+64 bytes.
func parseMeta(b []byte) (boltMeta, bool) {
	m := b[boltPageHeader:]
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(m[:boltMetaChecksumAt])
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion || le.Uint64(m[56:]) != h.Sum64() {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: uint64(le.Uint32(m[8:])), root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]),
		highWater: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// newestMeta is the meta page bbolt opens the file with: the valid one, or of two valid ones
// the one of the later transaction. false: neither is valid.
func newestMeta(m0 boltMeta, ok0 bool, m1 boltMeta, ok1 bool) (boltMeta, bool) {
	switch {
	case ok0 && ok1 && m1.txid > m0.txid, !ok0 && ok1:
		return m1, true
	case ok0:
		return m0, true
	}
	return boltMeta{}, false
}

// validPageSize: bbolt's pages are a power of two from 512 bytes to 1 MiB.
func validPageSize(ps uint64) bool {
	return ps >= 512 && ps <= 1<<20 && ps&(ps-1) == 0
}

func (w *boltWalker) check() error {
	m0, ok0 := w.readMeta(0)
	ps := int64(os.Getpagesize())
	if ok0 {
		ps = int64(m0.pageSize)
	}
	m1, ok1 := w.readMeta(ps)
	m, ok := newestMeta(m0, ok0, m1, ok1)
	if !ok {
		return corrupt("neither meta page is valid")
	}
	w.meta = m
	if !validPageSize(m.pageSize) {
		return corrupt("page size %d", m.pageSize)
	}
	if m.highWater < 2 || m.highWater > uint64(w.size)/m.pageSize {
		return corrupt("the meta page counts %d pages, the file holds %d", m.highWater, uint64(w.size)/m.pageSize)
	}
	if m.freelist != boltNoFreelist {
		if err := w.freelist(m.freelist); err != nil {
			return err
		}
	}
	if w.scan != nil && (w.scan.fallback || !w.scan.ready || w.scan.meta != m) {
		w.scan = nil
	}
	return w.tree(m.root, 0)
}

// page reads page id with its overflow pages, checking it lies inside the database.
func (w *boltWalker) page(id uint64) ([]byte, error) {
	ps := w.meta.pageSize
	if id < 2 || id >= w.meta.highWater {
		return nil, corrupt("page %d is outside the database's %d pages", id, w.meta.highWater)
	}
	head, err := w.readAt(int64(id*ps), boltPageHeader)
	if err != nil {
		return nil, err
	}
	overflow := uint64(binary.LittleEndian.Uint32(head[12:]))
	if got := binary.LittleEndian.Uint64(head[0:]); got != id {
		return nil, corrupt("page %d says it is page %d", id, got)
	}
	if id+overflow >= w.meta.highWater {
		return nil, corrupt("page %d with %d overflow pages runs past the database's %d pages", id, overflow, w.meta.highWater)
	}
	return w.readAt(int64(id*ps), int((1+overflow)*ps))
}

func (w *boltWalker) freelist(id uint64) error {
	p, err := w.page(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags := binary.LittleEndian.Uint16(p[8:]); flags != boltFreelistPage {
		return corrupt("freelist page %d has flags %#x", id, flags)
	}
	count, start := uint64(binary.LittleEndian.Uint16(p[10:])), uint64(boltPageHeader)
	if count == 0xFFFF {
		if len(p) < boltPageHeader+8 {
			return corrupt("freelist page %d too short", id)
		}
		count, start = binary.LittleEndian.Uint64(p[boltPageHeader:]), boltPageHeader+8
	}
	if count > uint64(len(p)) || start+count*8 > uint64(len(p)) {
		return corrupt("freelist page %d lists %d pages, more than it holds", id, count)
	}
	for i := uint64(0); i < count; i++ {
		if free := binary.LittleEndian.Uint64(p[start+i*8:]); free >= w.meta.highWater {
			return corrupt("freelist page %d names page %d, outside the database", id, free)
		}
	}
	return nil
}

// tree checks the page tree of one bucket rooted at page id.
func (w *boltWalker) tree(id uint64, depth int) error {
	if depth > boltMaxDepth {
		return corrupt("bucket tree deeper than %d", boltMaxDepth)
	}
	if w.seen[id] {
		return corrupt("page %d is reached twice", id)
	}
	w.seen[id] = true
	if w.scan != nil {
		// The checks of page, on the summary (which exists only for 2 <= id < highWater
		// and a page that says it is page id).
		if s, ok := w.scan.pages[id]; ok && !s.deferred {
			if id+s.overflow >= w.meta.highWater {
				return corrupt("page %d with %d overflow pages runs past the database's %d pages", id, s.overflow, w.meta.highWater)
			}
			return w.walkNode(&s.node, depth)
		}
	}
	p, err := w.page(id)
	if err != nil {
		return err
	}
	return w.nodePage(p, id, depth)
}

// walkNode follows a page summary's references in element order, as nodePage would, then
// returns the error nodePage would have met after them.
func (w *boltWalker) walkNode(n *nodeSum, depth int) error {
	for _, r := range n.refs {
		var err error
		if r.inline != nil {
			err = w.walkNode(r.inline, depth+1)
		} else {
			err = w.tree(r.child, depth+1)
		}
		if err != nil {
			return err
		}
	}
	return n.err
}

// nodePage checks a branch or leaf page (p), from the file (id) or inline in a bucket value
// (id 0), and follows its children.
func (w *boltWalker) nodePage(p []byte, id uint64, depth int) error {
	if len(p) < boltPageHeader {
		return corrupt("page %d shorter than its header", id)
	}
	le := binary.LittleEndian
	flags, count := le.Uint16(p[8:]), int(le.Uint16(p[10:]))
	if boltPageHeader+count*boltElementSize > len(p) {
		return corrupt("page %d has %d elements, more than it holds", id, count)
	}
	for i := 0; i < count; i++ {
		e := boltPageHeader + i*boltElementSize
		switch flags {
		case boltBranchPage:
			pos, ksize, child := int(le.Uint32(p[e:])), int(le.Uint32(p[e+4:])), le.Uint64(p[e+8:])
			if e+pos+ksize > len(p) || e+pos < e {
				return corrupt("page %d element %d: key past the page", id, i)
			}
			if err := w.tree(child, depth+1); err != nil {
				return err
			}
		case boltLeafPage:
			eflags, pos, ksize, vsize := le.Uint32(p[e:]), int(le.Uint32(p[e+4:])), int(le.Uint32(p[e+8:])), int(le.Uint32(p[e+12:]))
			start := e + pos
			if pos < 0 || ksize < 0 || vsize < 0 || start+ksize+vsize > len(p) || start < e {
				return corrupt("page %d element %d: key or value past the page", id, i)
			}
			if eflags&boltBucketLeaf == 0 {
				continue
			}
			v := p[start+ksize : start+ksize+vsize]
			if len(v) < 16 {
				return corrupt("page %d element %d: bucket header of %d bytes", id, i, len(v))
			}
			if root := le.Uint64(v); root != 0 {
				if err := w.tree(root, depth+1); err != nil {
					return err
				}
			} else if err := w.nodePage(v[16:], 0, depth+1); err != nil { // an inline bucket
				return err
			}
		default:
			return corrupt("page %d has flags %#x, neither branch nor leaf", id, flags)
		}
	}
	return nil
}

// pageScan reads a bbolt file's pages as the file streams past, in order, and keeps for each
// page what boltBoundsScan's walk needs of it (nodeSum): the pages it refers to, in element
// order, and the first bounds error nodePage would meet. Memory is a few words per page,
// never the page. A page whose elements or bucket values do not all lie in its first
// page is marked deferred: the walk reads it from the file. Pages are summarised whether or
// not the tree reaches them (free pages, overflow pages that happen to start with their own
// number): only those the walk reaches count.
type pageScan struct {
	// head gathers the stream's first bytes until both meta pages are in.
	head []byte
	// ready: meta is chosen, as boltWalker.check chooses it, and pages are summarised with
	// its page size.
	ready bool
	meta  boltMeta
	// fallback: the stream is not what a sound snapshot looks like at its start (no valid
	// meta, an odd page size): boltBoundsScan reads the file instead, and fails as it would.
	fallback bool
	off      int64  // stream offset of the next byte after cur
	cur      []byte // the start of a page not complete yet
	pages    map[uint64]*pageSum
}

// pageSum is one page as the scan saw it.
type pageSum struct {
	overflow uint64
	deferred bool
	node     nodeSum
}

// nodeSum is a branch or leaf page (or an inline bucket's page) for the walk.
type nodeSum struct {
	refs []nodeRef
	err  error
}

// nodeRef is a child page or, for an inline bucket, its page.
type nodeRef struct {
	child  uint64
	inline *nodeSum
}

// scanHeadMax bounds what the scan gathers before it knows the page size (meta 1 lies one
// page in, and a page is at most 1 MiB).
const scanHeadMax = 1<<20 + boltPageHeader + 64

func newPageScan() *pageScan { return &pageScan{pages: map[uint64]*pageSum{}} }

func (s *pageScan) Write(p []byte) (int, error) {
	n := len(p)
	if s.fallback {
		return n, nil
	}
	if !s.ready {
		s.head = append(s.head, p...)
		if !s.chooseMeta() {
			if s.fallback || len(s.head) > scanHeadMax {
				s.fallback, s.head = true, nil
			}
			return n, nil
		}
		p, s.head = s.head, nil
	}
	ps := int(s.meta.pageSize)
	for len(p) > 0 {
		if len(s.cur) == 0 && len(p) >= ps {
			s.page(p[:ps])
			p = p[ps:]
			s.off += int64(ps)
			continue
		}
		k := min(ps-len(s.cur), len(p))
		s.cur = append(s.cur, p[:k]...)
		p = p[k:]
		if len(s.cur) == ps {
			s.page(s.cur)
			s.off += int64(ps)
			s.cur = s.cur[:0]
		}
	}
	return n, nil
}

// chooseMeta picks the meta page from the stream's head as boltWalker.check does: false while
// more bytes are needed, or when the scan falls back.
func (s *pageScan) chooseMeta() bool {
	if len(s.head) < boltPageHeader+64 {
		return false
	}
	m0, ok0 := parseMeta(s.head)
	ps := int64(os.Getpagesize())
	if ok0 {
		ps = int64(m0.pageSize)
	}
	if ps > 1<<20 {
		s.fallback = true
		return false
	}
	if int64(len(s.head)) < ps+boltPageHeader+64 {
		return false
	}
	m1, ok1 := parseMeta(s.head[ps:])
	m, ok := newestMeta(m0, ok0, m1, ok1)
	if !ok {
		s.fallback = true
		return false
	}
	s.meta = m
	if !validPageSize(m.pageSize) || m.highWater < 2 {
		s.fallback = true
		return false
	}
	s.ready = true
	return true
}

// page summarises the page at s.off, p being its first (page size) bytes.
func (s *pageScan) page(p []byte) {
	id := uint64(s.off) / s.meta.pageSize
	if id < 2 || id >= s.meta.highWater || binary.LittleEndian.Uint64(p) != id {
		return
	}
	overflow := uint64(binary.LittleEndian.Uint32(p[12:]))
	sum := &pageSum{overflow: overflow}
	if id+overflow >= s.meta.highWater {
		// The walk refuses it before looking inside.
		s.pages[id] = sum
		return
	}
	node, ok := summarize(p, int((1+overflow)*s.meta.pageSize), id)
	sum.node, sum.deferred = node, !ok
	s.pages[id] = sum
}

// summarize is nodePage on a page of size bytes of which p holds the first: it records the
// references nodePage would follow and the error it would return; ok is false when that
// needs a byte past p.
func summarize(p []byte, size int, id uint64) (n nodeSum, ok bool) {
	if size < boltPageHeader {
		n.err = corrupt("page %d shorter than its header", id)
		return n, true
	}
	if len(p) < boltPageHeader {
		return n, false
	}
	le := binary.LittleEndian
	flags, count := le.Uint16(p[8:]), int(le.Uint16(p[10:]))
	if boltPageHeader+count*boltElementSize > size {
		n.err = corrupt("page %d has %d elements, more than it holds", id, count)
		return n, true
	}
	if boltPageHeader+count*boltElementSize > len(p) {
		return n, false
	}
	for i := 0; i < count; i++ {
		e := boltPageHeader + i*boltElementSize
		switch flags {
		case boltBranchPage:
			pos, ksize, child := int(le.Uint32(p[e:])), int(le.Uint32(p[e+4:])), le.Uint64(p[e+8:])
			if e+pos+ksize > size || e+pos < e {
				n.err = corrupt("page %d element %d: key past the page", id, i)
				return n, true
			}
			n.refs = append(n.refs, nodeRef{child: child})
		case boltLeafPage:
			eflags, pos, ksize, vsize := le.Uint32(p[e:]), int(le.Uint32(p[e+4:])), int(le.Uint32(p[e+8:])), int(le.Uint32(p[e+12:]))
			start := e + pos
			if pos < 0 || ksize < 0 || vsize < 0 || start+ksize+vsize > size || start < e {
				n.err = corrupt("page %d element %d: key or value past the page", id, i)
				return n, true
			}
			if eflags&boltBucketLeaf == 0 {
				continue
			}
			if start+ksize+vsize > len(p) {
				return n, false
			}
			v := p[start+ksize : start+ksize+vsize]
			if len(v) < 16 {
				n.err = corrupt("page %d element %d: bucket header of %d bytes", id, i, len(v))
				return n, true
			}
			if root := le.Uint64(v); root != 0 {
				n.refs = append(n.refs, nodeRef{child: root})
				continue
			}
			inner, ok := summarize(v[16:], len(v)-16, 0) // an inline bucket
			if !ok {
				return n, false
			}
			n.refs = append(n.refs, nodeRef{inline: &inner})
		default:
			n.err = corrupt("page %d has flags %#x, neither branch nor leaf", id, flags)
			return n, true
		}
	}
	return n, true
}

// kvKey reads the key of an mvccpb.KeyValue; field 1 comes first as protobuf writes it, so
// the 8 KiB values of a large keyspace need not be unmarshalled.
func kvKey(v []byte) ([]byte, error) {
	if len(v) > 0 && v[0] == 0x0a {
		l, n := binary.Uvarint(v[1:])
		if n > 0 && uint64(len(v)-1-n) >= l {
			return v[1+n : 1+n+int(l)], nil
		}
	}
	var kv mvccpb.KeyValue
	if err := proto.Unmarshal(v, &kv); err != nil {
		return nil, err
	}
	return kv.Key, nil
}

// EnsureSnapshotDir makes dir (and missing parents) with mode 0700, or checks that an existing
// dir is private: a real folder (not a symbolic link, which could send every Secret of the
// cluster elsewhere), owned by this user, with no group or other bits. An existing folder is
// never tightened by itself, since it may be the operator's working folder or /tmp; the
// error says what to do.
func EnsureSnapshotDir(dir string) error {
	if err := CheckSnapshotDir(dir); err != nil {
		return err
	}
	if _, err := os.Lstat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("snapshot folder %s: %w", dir, err)
	}
	// A umask like 0277 would leave a folder we cannot write; 0700 is what is wanted.
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("snapshot folder %s: %w", dir, err)
	}
	return CheckSnapshotDir(dir)
}

// CheckSnapshotDir is EnsureSnapshotDir's check without creating anything, for a preflight: a
// missing dir passes (it will be made 0700).
func CheckSnapshotDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("snapshot folder %s: %w", dir, err)
	}
	fix := "give a folder of its own that does not exist yet (it is made 0700)"
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("snapshot folder %s: %w: it is a symbolic link, which could send the snapshot (every Secret of the cluster) elsewhere; %s", dir, ErrSnapshotDirNotPrivate, fix)
	case !fi.IsDir():
		return fmt.Errorf("snapshot folder %s: %w: it is not a folder; %s", dir, ErrSnapshotDirNotPrivate, fix)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("snapshot folder %s: %w: it belongs to uid %d, not to this user (uid %d), who could read or swap the snapshot; %s",
			dir, ErrSnapshotDirNotPrivate, st.Uid, os.Geteuid(), fix)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("snapshot folder %s: %w: its mode is %04o, so group or others can reach the snapshot (every Secret of the cluster); run 'chmod 700 %s', or %s",
			dir, ErrSnapshotDirNotPrivate, perm, dir, fix)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
