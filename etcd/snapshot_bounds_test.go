package etcd

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// boltSnapshot writes an etcd-like bbolt file (a "key" bucket of revisions, a "meta" bucket)
// with etcd's sha256 trailer, as a snapshot stream ends. data is the bbolt part, the bytes a
// test damages.
func boltSnapshot(t *testing.T, keys int) (path string, data []byte) {
	t.Helper()
	path = boltFile(t, "snap.db", keys, func(i int) ([]byte, error) {
		return proto.Marshal(&mvccpb.KeyValue{Key: []byte(fmt.Sprintf("/registry/secrets/ns/s%04d", i)), Value: make([]byte, 100), ModRevision: int64(i)})
	}, func(mb *bolt.Bucket) error {
		return mb.Put([]byte("consistent_index"), make([]byte, 8))
	})
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	withTrailer(t, path, data)
	return path, data
}

// boltFile writes a bbolt file named name with etcd's two buckets: revisions 1 to keys in
// "key", each holding value(revision), and "meta", which meta fills (nil leaves it empty).
func boltFile(t *testing.T, name string, keys int, value func(rev int) ([]byte, error), meta func(*bolt.Bucket) error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		kb, err := tx.CreateBucket([]byte("key"))
		if err != nil {
			return err
		}
		for i := 1; i <= keys; i++ {
			rev := make([]byte, 17)
			binary.BigEndian.PutUint64(rev, uint64(i))
			rev[8] = '_'
			v, err := value(i)
			if err != nil {
				return err
			}
			if err := kb.Put(rev, v); err != nil {
				return err
			}
		}
		mb, err := tx.CreateBucket([]byte("meta"))
		if err != nil || meta == nil {
			return err
		}
		return meta(mb)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// withTrailer appends (or replaces) the sha256 trailer, so only the bbolt checks can object.
func withTrailer(t *testing.T, path string, data []byte) {
	t.Helper()
	if len(data)%512 == sha256.Size {
		data = data[:len(data)-sha256.Size]
	}
	sum := sha256.Sum256(data)
	if err := os.WriteFile(path, append(data, sum[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// bucketRootOffset finds, in the root bucket's leaf page, the file offset of the root page
// number of the named bucket.
func bucketRootOffset(t *testing.T, data []byte, name string) int {
	t.Helper()
	le := binary.LittleEndian
	meta := data[boltPageHeader:]
	ps, root := int(le.Uint32(meta[8:])), int(le.Uint64(meta[16:]))
	// The newest meta may be the second one.
	if m1 := data[ps+boltPageHeader:]; le.Uint64(m1[48:]) > le.Uint64(meta[48:]) {
		root = int(le.Uint64(m1[16:]))
	}
	p := data[root*ps:]
	if le.Uint16(p[8:]) != boltLeafPage {
		t.Fatalf("root bucket page %d is not a leaf", root)
	}
	for i := 0; i < int(le.Uint16(p[10:])); i++ {
		e := boltPageHeader + i*boltElementSize
		pos, ksize := int(le.Uint32(p[e+4:])), int(le.Uint32(p[e+8:]))
		if string(p[e+pos:e+pos+ksize]) == name {
			return root*ps + e + pos + ksize
		}
	}
	t.Fatalf("no bucket %q in the root page", name)
	return 0
}

// A damaged snapshot whose checksum trailer is valid (damaged before etcd hashed it, or
// re-hashed) must come back as ErrSnapshotCorrupt: without the bounds walk, bbolt follows the
// page number into unmapped memory and the whole process dies.
func TestVerifySnapshotDamagedPages(t *testing.T) {
	path, good := boltSnapshot(t, 200)
	info, err := VerifySnapshot(path)
	if err != nil || info.Keys != 200 || info.Revision != 200 {
		t.Fatalf("intact snapshot: %+v, %v", info, err)
	}

	le := binary.LittleEndian
	ps := int(le.Uint32(good[boltPageHeader+8:]))
	keyRoot := bucketRootOffset(t, good, "key")
	if le.Uint64(good[keyRoot:]) == 0 {
		t.Fatal("fixture: the key bucket is inline; it needs its own pages")
	}
	for name, damage := range map[string]func(b []byte){
		"bucket root far past the file":  func(b []byte) { le.PutUint64(b[keyRoot:], 1<<40) },
		"bucket root past the last page": func(b []byte) { le.PutUint64(b[keyRoot:], uint64(len(good)/ps)+3) },
		"bucket root on a meta page":     func(b []byte) { le.PutUint64(b[keyRoot:], 1) },
		"element count past the page": func(b []byte) {
			page := int(le.Uint64(good[keyRoot:])) * ps
			le.PutUint16(b[page+10:], 0xFFF0)
		},
		"key offset past the page": func(b []byte) {
			page := int(le.Uint64(good[keyRoot:])) * ps
			le.PutUint32(b[page+boltPageHeader+4:], 1<<30)
		},
		"both metas broken": func(b []byte) { b[boltPageHeader] ^= 0xff; b[ps+boltPageHeader] ^= 0xff },
	} {
		t.Run(name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			damage(b)
			p := filepath.Join(t.TempDir(), "damaged.db")
			withTrailer(t, p, b)
			if _, err := VerifySnapshot(p); !errors.Is(err, ErrSnapshotCorrupt) {
				t.Errorf("VerifySnapshot: %v, want ErrSnapshotCorrupt", err)
			}
		})
	}
}
