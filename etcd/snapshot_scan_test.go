package etcd

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// scanFile streams data through a pageScan in chunks of random sizes, as a snapshot arrives.
func scanFile(data []byte, r *rand.Rand) *pageScan {
	s := newPageScan()
	for p := data; len(p) > 0; {
		k := min(len(p), 1+r.IntN(3*4096))
		s.Write(p[:k])
		p = p[k:]
	}
	return s
}

// The bounds walk over the pages summarised in the stream must decide exactly as the walk
// over the file does (the same error, or none) on every file: checked here on an intact
// snapshot and on a thousand damaged ones, each damage in a page header, an element, a
// bucket value or a meta page (re-checksummed, so the damage gets past the meta check).
func TestPageScanDecidesAsTheFileWalk(t *testing.T) {
	path, good := boltSnapshot(t, 3000)
	r := rand.New(rand.NewPCG(15, 1))
	if s := scanFile(good, r); !s.ready || s.fallback || len(s.pages) == 0 {
		t.Fatalf("intact snapshot: scan ready %v, fallback %v, %d pages", s.ready, s.fallback, len(s.pages))
	}
	if err := boltBoundsScan(path, scanFile(good, r)); err != nil {
		t.Fatalf("intact snapshot: %v", err)
	}

	le := binary.LittleEndian
	ps := int(le.Uint32(good[boltPageHeader+8:]))
	pages := len(good) / ps
	reseal := func(b []byte, off int) {
		// A meta page damaged on purpose gets a valid checksum back.
		for _, m := range []int{0, ps} {
			if off >= m && off < m+boltPageHeader+64 {
				h := fnvSum(b[m+boltPageHeader : m+boltPageHeader+boltMetaChecksumAt])
				le.PutUint64(b[m+boltPageHeader+56:], h)
			}
		}
	}
	dir := t.TempDir()
	var differ, corrupted, deferred int
	for i := range 1000 {
		b := append([]byte(nil), good...)
		page := r.IntN(pages)
		var off int
		switch r.IntN(4) {
		case 0: // the header: id, flags, count, overflow
			off = page*ps + r.IntN(boltPageHeader)
		case 1: // an element of the page
			off = page*ps + boltPageHeader + r.IntN(8*boltElementSize)
		case 2: // a meta page's fields
			off = (page%2)*ps + boltPageHeader + r.IntN(56)
		default: // anywhere in the page
			off = page*ps + r.IntN(ps)
		}
		switch r.IntN(3) {
		case 0:
			b[off] ^= byte(1 + r.IntN(255))
		case 1:
			b[off] = 0
		default:
			if off+8 <= len(b) {
				le.PutUint64(b[off:], uint64(r.IntN(2*pages)))
			}
		}
		reseal(b, off)
		p := filepath.Join(dir, "damaged.db")
		withTrailer(t, p, b)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := scanFile(data, r)
		for _, sum := range s.pages {
			if sum.deferred {
				deferred++
			}
		}
		want, got := boltBounds(p), boltBoundsScan(p, s)
		if (want == nil) != (got == nil) || (want != nil && want.Error() != got.Error()) {
			differ++
			if differ <= 5 {
				t.Errorf("damage %d at byte %d (page %d): the file walk says %v, the stream's %v", i, off, off/ps, want, got)
			}
		}
		if want != nil {
			corrupted++
		}
	}
	if differ > 0 {
		t.Errorf("%d of 1000 damaged files decided differently", differ)
	}
	// The damage must reach the walk often enough for the comparison to mean something.
	if corrupted < 100 {
		t.Errorf("only %d of 1000 damaged files failed the walk", corrupted)
	}
	t.Logf("%d of 1000 damaged files failed the walk; %d pages deferred to the file", corrupted, deferred)
}

func fnvSum(b []byte) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for _, c := range b {
		h ^= uint64(c)
		h *= prime
	}
	return h
}

// A snapshot that fails the structure check is refused by VerifySnapshot however its bytes
// were read: the one-pass check finds what the file walk finds (TestVerifySnapshotDamagedPages
// has the cases); here the scan's shortcuts are bypassed one by one.
func TestPageScanFallsBack(t *testing.T) {
	path, good := boltSnapshot(t, 50)
	// Both meta pages broken: the scan gives up, the file walk refuses.
	b := append([]byte(nil), good...)
	ps := int(binary.LittleEndian.Uint32(good[boltPageHeader+8:]))
	b[boltPageHeader] ^= 0xff
	b[ps+boltPageHeader] ^= 0xff
	s := scanFile(b, rand.New(rand.NewPCG(1, 2)))
	if !s.fallback || s.ready {
		t.Errorf("no valid meta: fallback %v, ready %v", s.fallback, s.ready)
	}
	p := filepath.Join(t.TempDir(), "nometa.db")
	withTrailer(t, p, b)
	if _, err := VerifySnapshot(p); err == nil {
		t.Error("a snapshot without a valid meta page passed")
	}
	// A scan of other bytes than the file's (its meta differs) is not used.
	_, ob := boltSnapshot(t, 400)
	if err := boltBoundsScan(path, scanFile(ob, rand.New(rand.NewPCG(3, 4)))); err != nil {
		t.Errorf("scan of another file: %v", err)
	}
}

// failingReader hands over data, then fails.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// saveSnapshot keeps a snapshot only when every check passed: a damaged one (its trailer
// right or wrong) or a stream that breaks leaves neither the .part file nor the snapshot.
func TestSaveSnapshotRefuses(t *testing.T) {
	src, good := boltSnapshot(t, 500)
	sealed, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "snap.db")
	part := path + ".part"
	nothingLeft := func(t *testing.T) {
		t.Helper()
		for _, p := range []string{path, part} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s left: %v", filepath.Base(p), err)
			}
		}
	}

	t.Run("intact", func(t *testing.T) {
		n, sum, st, err := saveSnapshot(bytes.NewReader(sealed), part, path, io.Discard)
		if err != nil || n != int64(len(sealed)) || st.keys != 500 || st.revision != 500 {
			t.Fatalf("saveSnapshot: %d bytes, %+v, %v", n, st, err)
		}
		if want := fmt.Sprintf("%x", sha256.Sum256(sealed)); sum != want {
			t.Errorf("sha256 %s, want %s", sum, want)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("snapshot: %v %v", fi, err)
		}
		if _, err := os.Stat(part); !os.IsNotExist(err) {
			t.Errorf(".part left: %v", err)
		}
		os.Remove(path)
	})

	le := binary.LittleEndian
	keyRoot := bucketRootOffset(t, good, "key")
	damaged := append([]byte(nil), good...)
	le.PutUint64(damaged[keyRoot:], 1<<40)
	p := filepath.Join(t.TempDir(), "damaged.db")
	withTrailer(t, p, damaged)
	damagedSealed, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	badTrailer := append([]byte(nil), sealed...)
	badTrailer[len(badTrailer)/2] ^= 1

	for name, r := range map[string]io.Reader{
		"damaged page, right trailer": bytes.NewReader(damagedSealed),
		"wrong trailer":               bytes.NewReader(badTrailer),
		"truncated":                   bytes.NewReader(sealed[:len(sealed)/2]),
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, _, err := saveSnapshot(r, part, path, io.Discard); !errors.Is(err, ErrSnapshotCorrupt) {
				t.Errorf("saveSnapshot: %v, want ErrSnapshotCorrupt", err)
			}
			nothingLeft(t)
		})
	}
	t.Run("stream breaks", func(t *testing.T) {
		broke := errors.New("connection reset")
		n, _, _, err := saveSnapshot(&failingReader{data: sealed[:len(sealed)/2], err: broke}, part, path, io.Discard)
		var se *streamError
		if !errors.As(err, &se) || !errors.Is(err, broke) || n != int64(len(sealed)/2) {
			t.Errorf("saveSnapshot: %d bytes, %v; want a streamError after half the file", n, err)
		}
		nothingLeft(t)
	})
	t.Run("a .part already there is not ours", func(t *testing.T) {
		if err := os.WriteFile(part, []byte("someone's"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := saveSnapshot(bytes.NewReader(sealed), part, path, io.Discard); !errors.Is(err, os.ErrExist) {
			t.Errorf("saveSnapshot: %v, want ErrExist", err)
		}
		if b, _ := os.ReadFile(part); string(b) != "someone's" {
			t.Errorf("the existing .part was changed: %q", b)
		}
		os.Remove(part)
	})
}

// A page whose elements run past its first page cannot be summarised from the stream: it is
// deferred, and the walk reads it from the file, deciding as the file walk does.
func TestPageScanDefers(t *testing.T) {
	path := boltFile(t, "big.db", 20, func(int) ([]byte, error) { return make([]byte, 10<<10), nil }, nil)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	ps := int(le.Uint32(good[boltPageHeader+8:]))
	tried := 0
	for id := 2; id < len(good)/ps; id++ {
		p := good[id*ps:]
		if le.Uint64(p) != uint64(id) || le.Uint16(p[8:]) != boltLeafPage || le.Uint32(p[12:]) == 0 {
			continue
		}
		for _, count := range []uint16{uint16(ps / boltElementSize), uint16(ps/boltElementSize + 3)} {
			b := append([]byte(nil), good...)
			le.PutUint16(b[id*ps+10:], count)
			f := filepath.Join(t.TempDir(), "deferred.db")
			withTrailer(t, f, b)
			s := scanFile(b, rand.New(rand.NewPCG(uint64(id), 7)))
			if sum := s.pages[uint64(id)]; sum == nil || !sum.deferred {
				t.Fatalf("page %d with %d elements: summary %+v, want deferred", id, count, sum)
			}
			want, got := boltBounds(f), boltBoundsScan(f, s)
			if (want == nil) != (got == nil) || (want != nil && want.Error() != got.Error()) {
				t.Errorf("page %d with %d elements: the file walk says %v, the stream's %v", id, count, want, got)
			}
			tried++
		}
		if tried >= 6 {
			break
		}
	}
	if tried == 0 {
		t.Fatal("fixture: no leaf page with overflow pages")
	}
}
