package ltx

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// testChain is a sequence of consecutive files and the database image before
// the first and after each.
type testChain struct {
	pageSize uint32
	base     []byte // image before the first file (empty if it is a snapshot)
	files    []*testFile
	images   [][]byte
}

// newTestChain builds n consecutive files that grow, shrink and rewrite a
// database. The first is a snapshot if snapshotFirst.
func newTestChain(rng *rand.Rand, pageSize uint32, n int, snapshotFirst bool) *testChain {
	c := &testChain{pageSize: pageSize}
	img := []byte{}
	txid := TXID(1)
	if !snapshotFirst {
		txid = 10
		for range 30 {
			img = append(img, testPage(rng, pageSize)...)
		}
		c.base = slices.Clone(img)
	}
	for i := 0; i < n; i++ {
		oldCommit := uint32(len(img)) / pageSize
		commit := oldCommit
		switch {
		case i == 0 && snapshotFirst:
			commit = 25
		case rng.IntN(3) == 0 && commit > 5:
			commit -= uint32(rng.IntN(5))
		default:
			commit += uint32(rng.IntN(6))
		}
		var pgnos []uint32
		for p := uint32(1); p <= commit; p++ {
			if p > oldCommit || (i == 0 && snapshotFirst) || rng.IntN(4) == 0 {
				pgnos = append(pgnos, p)
			}
		}
		pre := Checksum(0)
		if len(c.files) > 0 || !snapshotFirst {
			pre = mustChecksum(img, pageSize)
		}
		ntx := TXID(1 + rng.IntN(3))
		hdr := Header{Version: Version, PageSize: pageSize, Commit: commit, MinTXID: txid, MaxTXID: txid + ntx - 1,
			Timestamp: int64(1700000000000 + i), PreApplyChecksum: pre}
		f := newTestFile(rng, hdr, pgnos...)
		img = applyFile(img, f.hdr, f.pgnos, f.pages)
		f.post = mustChecksum(img, pageSize)
		c.files = append(c.files, f)
		c.images = append(c.images, slices.Clone(img))
		txid += ntx
	}
	return c
}

// applyFile applies pages to a database image and truncates or extends it
// to the commit size.
func applyFile(img []byte, hdr Header, pgnos []uint32, pages map[uint32][]byte) []byte {
	size := int(hdr.Commit) * int(hdr.PageSize)
	if len(img) < size {
		img = append(img, make([]byte, size-len(img))...)
	}
	img = img[:size]
	for _, p := range pgnos {
		copy(img[int(p-1)*int(hdr.PageSize):], pages[p])
	}
	return img
}

func mustChecksum(img []byte, pageSize uint32) Checksum {
	c, err := ChecksumDatabase(bytes.NewReader(img), pageSize)
	if err != nil {
		panic(err)
	}
	return c
}

func TestCompactor_EqualsReplay(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, snapshotFirst := range []bool{false, true} {
		for _, n := range []int{1, 2, 5, 20} {
			chain := newTestChain(rng, 1024, n, snapshotFirst)
			var files [][]byte
			for _, f := range chain.files {
				files = append(files, encodeFile(t, f))
			}
			var out bytes.Buffer
			c := NewCompactor(&out, readers(files))
			if err := c.Compact(context.Background()); err != nil {
				t.Fatalf("n=%d snapshot=%v: Compact: %v", n, snapshotFirst, err)
			}
			got, err := decodeFile(out.Bytes())
			if err != nil {
				t.Fatalf("decode compaction: %v", err)
			}
			first, last := chain.files[0].hdr, chain.files[n-1].hdr
			if got.hdr.MinTXID != first.MinTXID || got.hdr.MaxTXID != last.MaxTXID || got.hdr.Commit != last.Commit ||
				got.hdr.PreApplyChecksum != first.PreApplyChecksum || got.hdr.Timestamp != last.Timestamp {
				t.Fatalf("header %+v", got.hdr)
			}
			if got.hdr.IsSnapshot() != snapshotFirst {
				t.Fatalf("IsSnapshot=%v", got.hdr.IsSnapshot())
			}
			final := chain.images[n-1]
			img := applyFile(slices.Clone(chain.base), got.hdr, got.pgnos, got.pages)
			if !bytes.Equal(img, final) {
				t.Fatalf("n=%d snapshot=%v: compacted image differs from replay", n, snapshotFirst)
			}
			if want := mustChecksum(final, chain.pageSize); got.trailer.PostApplyChecksum != want || c.Trailer().PostApplyChecksum != want {
				t.Fatalf("post-apply %s, image checksum %s", got.trailer.PostApplyChecksum, want)
			}
			if c.Header() != got.hdr {
				t.Fatalf("Header() %+v, file %+v", c.Header(), got.hdr)
			}
		}
	}
}

func TestCompactor_Errors(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	chain := newTestChain(rng, 512, 3, false)
	enc := func(f *testFile) []byte { return encodeFile(t, f) }
	a, b, c := enc(chain.files[0]), enc(chain.files[1]), enc(chain.files[2])
	compact := func(files ...[]byte) error {
		return NewCompactor(&bytes.Buffer{}, readers(files)).Compact(context.Background())
	}
	t.Run("ErrNoInputs", func(t *testing.T) {
		if err := compact(); !errors.Is(err, ErrNoInputs) {
			t.Fatal(err)
		}
	})
	t.Run("ErrNonContiguous", func(t *testing.T) {
		if err := compact(a, c); !errors.Is(err, ErrNonContiguous) {
			t.Fatal(err)
		}
		if err := compact(b, a); !errors.Is(err, ErrNonContiguous) {
			t.Fatal(err)
		}
	})
	t.Run("ErrChecksumChain", func(t *testing.T) {
		f := *chain.files[1]
		f.hdr.PreApplyChecksum ^= 0x10
		if err := compact(a, enc(&f)); !errors.Is(err, ErrChecksumChain) {
			t.Fatal(err)
		}
	})
	t.Run("ErrMismatchedInputs", func(t *testing.T) {
		f := newTestFile(rng, deltaHeader(1024, 3, chain.files[0].hdr.MaxTXID+1, chain.files[0].hdr.MaxTXID+1, chain.files[0].post), 1)
		if err := compact(a, enc(f)); !errors.Is(err, ErrMismatchedInputs) {
			t.Fatal(err)
		}
	})
	t.Run("ErrChecksumMismatch", func(t *testing.T) {
		bad := slices.Clone(b)
		bad[len(bad)-1] ^= 1
		if err := compact(a, bad, c); !errors.Is(err, ErrChecksumMismatch) {
			t.Fatal(err)
		}
	})
	t.Run("Canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := NewCompactor(&bytes.Buffer{}, readers([][]byte{a, b})).Compact(ctx); !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	})
}
