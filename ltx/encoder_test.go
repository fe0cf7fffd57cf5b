package ltx

import (
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// newTestEncoder returns an Encoder with header h already encoded.
func newTestEncoder(t *testing.T, h Header) *Encoder {
	t.Helper()
	enc := NewEncoder(io.Discard)
	if err := enc.EncodeHeader(h); err != nil {
		t.Fatal(err)
	}
	return enc
}

func TestEncoder_EncodeHeader(t *testing.T) {
	t.Run("ErrInvalidHeader", func(t *testing.T) {
		if err := NewEncoder(io.Discard).EncodeHeader(Header{Version: Version}); !errors.Is(err, ErrInvalidHeader) {
			t.Fatal(err)
		}
	})
	t.Run("Twice", func(t *testing.T) {
		enc := newTestEncoder(t, snapshotHeader(512, 0, 1))
		if err := enc.EncodeHeader(snapshotHeader(512, 0, 1)); err == nil {
			t.Fatal("second EncodeHeader succeeded")
		}
	})
	t.Run("ErrEncoderClosed", func(t *testing.T) {
		enc := newTestEncoder(t, snapshotHeader(512, 0, 1))
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		if err := enc.EncodeHeader(snapshotHeader(512, 0, 1)); !errors.Is(err, ErrEncoderClosed) {
			t.Fatal(err)
		}
		if err := enc.EncodePage(PageHeader{Pgno: 1}, make([]byte, 512)); !errors.Is(err, ErrEncoderClosed) {
			t.Fatal(err)
		}
		if err := enc.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func TestEncoder_EncodePage(t *testing.T) {
	page := make([]byte, 4096)
	delta := deltaHeader(4096, 300000, 2, 2, ChecksumFlag|1)
	t.Run("BeforeHeader", func(t *testing.T) {
		if err := NewEncoder(io.Discard).EncodePage(PageHeader{Pgno: 1}, page); err == nil {
			t.Fatal("EncodePage before EncodeHeader succeeded")
		}
	})
	t.Run("ErrOutOfOrderPages", func(t *testing.T) {
		enc := newTestEncoder(t, delta)
		if err := enc.EncodePage(PageHeader{Pgno: 5}, page); err != nil {
			t.Fatal(err)
		}
		for _, p := range []uint32{5, 4} {
			if err := enc.EncodePage(PageHeader{Pgno: p}, page); !errors.Is(err, ErrOutOfOrderPages) {
				t.Fatalf("page %d: %v", p, err)
			}
		}
	})
	t.Run("ErrPageOutOfRange", func(t *testing.T) {
		h := delta
		h.Commit = 3
		if err := newTestEncoder(t, h).EncodePage(PageHeader{Pgno: 4}, page); !errors.Is(err, ErrPageOutOfRange) {
			t.Fatal(err)
		}
	})
	t.Run("ErrLockPage", func(t *testing.T) {
		if err := newTestEncoder(t, delta).EncodePage(PageHeader{Pgno: LockPgno(4096)}, page); !errors.Is(err, ErrLockPage) {
			t.Fatal(err)
		}
	})
	t.Run("ErrPageSize", func(t *testing.T) {
		if err := newTestEncoder(t, delta).EncodePage(PageHeader{Pgno: 1}, page[:100]); !errors.Is(err, ErrPageSize) {
			t.Fatal(err)
		}
	})
	t.Run("ErrInvalidPageHeader", func(t *testing.T) {
		if err := newTestEncoder(t, delta).EncodePage(PageHeader{Pgno: 0}, page); !errors.Is(err, ErrInvalidPageHeader) {
			t.Fatal(err)
		}
		if err := newTestEncoder(t, delta).EncodePage(PageHeader{Pgno: 1, Flags: 0x8000}, page); !errors.Is(err, ErrInvalidPageHeader) {
			t.Fatal(err)
		}
	})
	t.Run("ErrSnapshotIncomplete", func(t *testing.T) {
		enc := newTestEncoder(t, snapshotHeader(4096, 3, 1))
		if err := enc.EncodePage(PageHeader{Pgno: 2}, page); !errors.Is(err, ErrSnapshotIncomplete) {
			t.Fatalf("first page 2: %v", err)
		}
		if err := enc.EncodePage(PageHeader{Pgno: 1}, page); err != nil {
			t.Fatal(err)
		}
		if err := enc.EncodePage(PageHeader{Pgno: 3}, page); !errors.Is(err, ErrSnapshotIncomplete) {
			t.Fatalf("gap: %v", err)
		}
		if err := enc.EncodePage(PageHeader{Pgno: 2}, page); err != nil {
			t.Fatal(err)
		}
		if err := enc.Close(); !errors.Is(err, ErrSnapshotIncomplete) {
			t.Fatalf("Close without page 3: %v", err)
		}
	})
	t.Run("ErrEncoderAborted", func(t *testing.T) {
		enc := NewEncoder(&failWriter{n: HeaderSize + 1})
		if err := enc.EncodeHeader(delta); err != nil {
			t.Fatal(err)
		}
		if err := enc.EncodePage(PageHeader{Pgno: 1}, page); !errors.Is(err, ErrEncoderAborted) {
			t.Fatal(err)
		}
		if err := enc.EncodePage(PageHeader{Pgno: 2}, page); !errors.Is(err, ErrEncoderAborted) {
			t.Fatal(err)
		}
		if err := enc.Close(); !errors.Is(err, ErrEncoderAborted) {
			t.Fatal(err)
		}
	})
}

func TestEncoder_Close(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	t.Run("ErrPostApplyChecksumMismatch", func(t *testing.T) {
		f := newTestFile(rng, snapshotHeader(512, 2, 1), 1, 2)
		enc := newTestEncoder(t, f.hdr)
		for _, p := range f.pgnos {
			if err := enc.EncodePage(PageHeader{Pgno: p}, f.pages[p]); err != nil {
				t.Fatal(err)
			}
		}
		enc.SetPostApplyChecksum(ChecksumFlag | 3)
		if err := enc.Close(); !errors.Is(err, ErrPostApplyChecksumMismatch) {
			t.Fatal(err)
		}
	})
	t.Run("ErrInvalidTrailer", func(t *testing.T) {
		enc := newTestEncoder(t, deltaHeader(512, 2, 2, 2, ChecksumFlag|1))
		if err := enc.Close(); !errors.Is(err, ErrInvalidTrailer) {
			t.Fatalf("no post-apply checksum: %v", err)
		}
		enc = newTestEncoder(t, deltaHeader(512, 0, 2, 2, ChecksumFlag|1))
		enc.SetPostApplyChecksum(ChecksumFlag | 1)
		if err := enc.Close(); !errors.Is(err, ErrInvalidTrailer) {
			t.Fatalf("empty database with non-empty checksum: %v", err)
		}
	})
	t.Run("BeforeHeader", func(t *testing.T) {
		if err := NewEncoder(io.Discard).Close(); err == nil {
			t.Fatal("Close before EncodeHeader succeeded")
		}
	})
	t.Run("WriteFails", func(t *testing.T) {
		f := newTestFile(rng, deltaHeader(512, 2, 2, 2, ChecksumFlag|1), 1)
		n := len(encodeFile(t, f))
		for limit := 0; limit < n; limit += 7 {
			enc := NewEncoder(&failWriter{n: limit})
			err := enc.EncodeHeader(f.hdr)
			if err == nil {
				err = enc.EncodePage(PageHeader{Pgno: 1}, f.pages[1])
			}
			if err == nil {
				enc.SetPostApplyChecksum(ChecksumFlag | 1)
				err = enc.Close()
			}
			if !errors.Is(err, ErrEncoderAborted) {
				t.Fatalf("writer failing after %d bytes: %v", limit, err)
			}
		}
	})
	t.Run("ShortWrite", func(t *testing.T) {
		enc := NewEncoder(shortWriter{})
		if err := enc.EncodeHeader(deltaHeader(512, 2, 2, 2, ChecksumFlag|1)); !errors.Is(err, io.ErrShortWrite) {
			t.Fatal(err)
		}
	})
}

// TestEncoder_OneWritePerPage pins the streaming behaviour: one Write per
// page, no page data retained.
func TestEncoder_OneWritePerPage(t *testing.T) {
	w := &countWriter{}
	enc := NewEncoder(w)
	if err := enc.EncodeHeader(deltaHeader(4096, 100, 2, 2, ChecksumFlag|1)); err != nil {
		t.Fatal(err)
	}
	page := make([]byte, 4096)
	for p := uint32(1); p <= 100; p++ {
		before := w.writes
		if err := enc.EncodePage(PageHeader{Pgno: p}, page); err != nil {
			t.Fatal(err)
		}
		if w.writes != before+1 {
			t.Fatalf("page %d took %d writes", p, w.writes-before)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		enc.Reset(io.Discard)
		_ = enc.EncodeHeader(deltaHeader(4096, 100, 2, 2, ChecksumFlag|1))
		for p := uint32(1); p <= 10; p++ {
			_ = enc.EncodePage(PageHeader{Pgno: p}, page)
		}
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per reused file", allocs)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(b []byte) (int, error) {
	if len(b) > w.n {
		n := w.n
		w.n = 0
		return n, errors.New("disk full")
	}
	w.n -= len(b)
	return len(b), nil
}

type shortWriter struct{}

func (shortWriter) Write(b []byte) (int, error) { return len(b) / 2, nil }

type countWriter struct{ writes int }

func (w *countWriter) Write(b []byte) (int, error) { w.writes++; return len(b), nil }
