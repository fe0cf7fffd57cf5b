package ltx

// Oracle tests: github.com/superfly/ltx v0.5.3, the reference implementation
// of the format, must accept every file we write, and we must accept every
// file it writes and decode it to the same header, pages and trailer.

import (
	"bytes"
	"context"
	"hash"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	upstream "github.com/superfly/ltx"
)

// upstreamHeader converts h to the reference type.
func upstreamHeader(h Header) upstream.Header {
	return upstream.Header{
		Version: h.Version, Flags: h.Flags, PageSize: h.PageSize, Commit: h.Commit,
		MinTXID: upstream.TXID(h.MinTXID), MaxTXID: upstream.TXID(h.MaxTXID), Timestamp: h.Timestamp,
		PreApplyChecksum: upstream.Checksum(h.PreApplyChecksum), WALOffset: h.WALOffset, WALSize: h.WALSize,
		WALSalt1: h.WALSalt1, WALSalt2: h.WALSalt2, NodeID: h.NodeID,
	}
}

// encodeUpstream encodes f with the reference encoder.
func encodeUpstream(tb testing.TB, f *testFile) []byte {
	tb.Helper()
	var buf bytes.Buffer
	enc, err := upstream.NewEncoder(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	if err := enc.EncodeHeader(upstreamHeader(f.hdr)); err != nil {
		tb.Fatalf("upstream EncodeHeader: %v", err)
	}
	sum := ChecksumFlag
	for _, p := range f.pgnos {
		if err := enc.EncodePage(upstream.PageHeader{Pgno: p}, f.pages[p]); err != nil {
			tb.Fatalf("upstream EncodePage(%d): %v", p, err)
		}
		sum = sum.Add(ChecksumPage(p, f.pages[p]))
	}
	switch {
	case f.post != 0:
		enc.SetPostApplyChecksum(upstream.Checksum(f.post))
	case f.hdr.NoChecksum():
	case f.hdr.IsSnapshot():
		enc.SetPostApplyChecksum(upstream.Checksum(sum))
	default:
		enc.SetPostApplyChecksum(upstream.ChecksumFlag | 1)
	}
	if err := enc.Close(); err != nil {
		tb.Fatalf("upstream Close: %v", err)
	}
	return buf.Bytes()
}

// decodeUpstream decodes b with the reference decoder.
func decodeUpstream(b []byte) (*decoded, error) {
	d := upstream.NewDecoder(bytes.NewReader(b))
	if err := d.DecodeHeader(); err != nil {
		return nil, err
	}
	h := d.Header()
	out := &decoded{pages: map[uint32][]byte{}, hdr: Header{
		Version: h.Version, Flags: h.Flags, PageSize: h.PageSize, Commit: h.Commit,
		MinTXID: TXID(h.MinTXID), MaxTXID: TXID(h.MaxTXID), Timestamp: h.Timestamp,
		PreApplyChecksum: Checksum(h.PreApplyChecksum), WALOffset: h.WALOffset, WALSize: h.WALSize,
		WALSalt1: h.WALSalt1, WALSalt2: h.WALSalt2, NodeID: h.NodeID,
	}}
	for {
		var ph upstream.PageHeader
		data := make([]byte, h.PageSize)
		if err := d.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		out.pgnos = append(out.pgnos, ph.Pgno)
		out.pages[ph.Pgno] = data
	}
	if err := d.Close(); err != nil {
		return nil, err
	}
	t := d.Trailer()
	out.trailer = Trailer{PostApplyChecksum: Checksum(t.PostApplyChecksum), FileChecksum: Checksum(t.FileChecksum)}
	return out, nil
}

func sameDecoded(tb testing.TB, got, want *decoded) {
	tb.Helper()
	if got.hdr != want.hdr {
		tb.Fatalf("header\n got %+v\nwant %+v", got.hdr, want.hdr)
	}
	if !slices.Equal(got.pgnos, want.pgnos) {
		tb.Fatalf("pages %v, want %v", got.pgnos, want.pgnos)
	}
	for _, p := range want.pgnos {
		if !bytes.Equal(got.pages[p], want.pages[p]) {
			tb.Fatalf("page %d differs", p)
		}
	}
	if got.trailer != want.trailer {
		tb.Fatalf("trailer %+v, want %+v", got.trailer, want.trailer)
	}
}

// oracleFiles returns a varied set of files.
func oracleFiles(rng *rand.Rand) map[string]*testFile {
	return map[string]*testFile{
		"Snapshot":             newTestFile(rng, snapshotHeader(4096, 40, 3), seq(40, 4096)...),
		"SnapshotEmpty":        newTestFile(rng, snapshotHeader(1024, 0, 1)),
		"Delta":                newTestFile(rng, deltaHeader(4096, 1000, 4, 7, ChecksumFlag|0xabc), 1, 7, 8, 500, 999),
		"DeltaNoPages":         newTestFile(rng, deltaHeader(4096, 10, 4, 4, ChecksumFlag|0xabc)),
		"DeltaShrinkToZero":    {hdr: deltaHeader(4096, 0, 2, 2, ChecksumFlag|3), post: ChecksumFlag, pages: map[uint32][]byte{}},
		"NoChecksum":           newTestFile(rng, Header{Version: Version, Flags: HeaderFlagNoChecksum, PageSize: 512, Commit: 5, MinTXID: 2, MaxTXID: 3}, 2, 5),
		"NoChecksumSnapshot":   newTestFile(rng, Header{Version: Version, Flags: HeaderFlagNoChecksum, PageSize: 512, Commit: 3, MinTXID: 1, MaxTXID: 3}, 1, 2, 3),
		"Incompressible":       {hdr: deltaHeader(8192, 3, 5, 5, ChecksumFlag|1), pgnos: []uint32{2}, pages: map[uint32][]byte{2: randomBytes(rng, 8192)}},
		"Zeros":                {hdr: deltaHeader(8192, 3, 5, 5, ChecksumFlag|1), pgnos: []uint32{3}, pages: map[uint32][]byte{3: make([]byte, 8192)}},
		"MaxTXIDAndTimestamps": newTestFile(rng, Header{Version: Version, PageSize: 2048, Commit: 1, MinTXID: 1<<64 - 2, MaxTXID: 1<<64 - 1, Timestamp: -5, PreApplyChecksum: 1<<64 - 1}, 1),
	}
}

// lockSnapshot returns a 1 GiB snapshot that spans the lock page. Most pages
// share one zero buffer to keep memory and time down.
func lockSnapshot(rng *rand.Rand) *testFile {
	const pageSize, commit = 65536, 16387
	f := &testFile{hdr: snapshotHeader(pageSize, commit, 9), pgnos: seq(commit, pageSize), pages: map[uint32][]byte{}}
	zero := make([]byte, pageSize)
	for _, p := range f.pgnos {
		f.pages[p] = zero
		if p < 3 || p > commit-4 {
			f.pages[p] = testPage(rng, pageSize)
		}
	}
	return f
}

// TestOracle_SnapshotSpanningLockPage checks a 1 GiB snapshot that skips the
// lock page, streaming it through both implementations.
func TestOracle_SnapshotSpanningLockPage(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB snapshot")
	}
	f := lockSnapshot(rand.New(rand.NewPCG(13, 14)))
	ours := encodeFile(t, f)
	theirs := encodeUpstream(t, f)
	if !bytes.Equal(ours, theirs) {
		t.Fatalf("our encoding differs from upstream's (%d vs %d bytes)", len(ours), len(theirs))
	}
	if err := upstream.NewDecoder(bytes.NewReader(ours)).Verify(); err != nil {
		t.Fatalf("upstream Verify: %v", err)
	}
	lock := LockPgno(f.hdr.PageSize)
	w := &pageWriter{pageSize: int(f.hdr.PageSize), keep: map[uint32][]byte{1: nil, 2: nil, lock: nil, f.hdr.Commit: nil}}
	if err := NewDecoder(bytes.NewReader(ours)).DecodeDatabaseTo(w); err != nil {
		t.Fatalf("DecodeDatabaseTo: %v", err)
	}
	if w.n != int64(f.hdr.Commit)*int64(f.hdr.PageSize) {
		t.Fatalf("image is %d bytes", w.n)
	}
	for p, got := range w.keep {
		want := f.pages[p]
		if p == lock {
			want = make([]byte, f.hdr.PageSize)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("page %d differs", p)
		}
	}
}

// pageWriter counts a database image written page by page and keeps copies
// of the pages named in keep.
type pageWriter struct {
	pageSize int
	n        int64
	keep     map[uint32][]byte
}

func (w *pageWriter) Write(b []byte) (int, error) {
	if len(b) == w.pageSize && w.n%int64(w.pageSize) == 0 {
		if p := uint32(w.n/int64(w.pageSize)) + 1; w.keep != nil {
			if _, ok := w.keep[p]; ok {
				w.keep[p] = bytes.Clone(b)
			}
		}
	}
	w.n += int64(len(b))
	return len(b), nil
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestOracle_UpstreamDecodesOurFiles(t *testing.T) {
	for name, f := range oracleFiles(rand.New(rand.NewPCG(5, 6))) {
		t.Run(name, func(t *testing.T) {
			b := encodeFile(t, f)
			theirs, err := decodeUpstream(b)
			if err != nil {
				t.Fatalf("upstream decode: %v", err)
			}
			ours, err := decodeFile(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			sameDecoded(t, theirs, ours)
			if err := upstream.NewDecoder(bytes.NewReader(b)).Verify(); err != nil {
				t.Fatalf("upstream Verify: %v", err)
			}
			if f.hdr.IsSnapshot() {
				var db bytes.Buffer
				if err := upstream.NewDecoder(bytes.NewReader(b)).DecodeDatabaseTo(&db); err != nil {
					t.Fatalf("upstream DecodeDatabaseTo: %v", err)
				}
			}
		})
	}
}

func TestOracle_WeDecodeUpstreamFiles(t *testing.T) {
	for name, f := range oracleFiles(rand.New(rand.NewPCG(7, 8))) {
		t.Run(name, func(t *testing.T) {
			b := encodeUpstream(t, f)
			theirs, err := decodeUpstream(b)
			if err != nil {
				t.Fatalf("upstream decode: %v", err)
			}
			ours, err := decodeFile(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			sameDecoded(t, ours, theirs)
			// Same compressor, same bytes: our encoding of the same input
			// must be byte-identical to upstream's.
			if mine := encodeFile(t, f); !bytes.Equal(mine, b) {
				t.Errorf("our encoding differs from upstream's (%d vs %d bytes)", len(mine), len(b))
			}
			if f.hdr.IsSnapshot() {
				var ours, theirs bytes.Buffer
				if err := NewDecoder(bytes.NewReader(b)).DecodeDatabaseTo(&ours); err != nil {
					t.Fatalf("DecodeDatabaseTo: %v", err)
				}
				if err := upstream.NewDecoder(bytes.NewReader(b)).DecodeDatabaseTo(&theirs); err != nil {
					t.Fatalf("upstream DecodeDatabaseTo: %v", err)
				}
				if !bytes.Equal(ours.Bytes(), theirs.Bytes()) {
					t.Fatal("database images differ")
				}
			}
		})
	}
}

func TestOracle_ChecksumPage(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	h := NewHasher()
	uh := upstream.NewHasher()
	for i := 0; i < 200; i++ {
		size := 512 << (i % 8)
		data := randomBytes(rng, size)
		pgno := rng.Uint32()
		want := Checksum(upstream.ChecksumPage(pgno, data))
		if got := ChecksumPage(pgno, data); got != want {
			t.Fatalf("ChecksumPage(%d)=%s, upstream %s", pgno, got, want)
		}
		if got := ChecksumPageWith(h, pgno, data); got != want {
			t.Fatalf("ChecksumPageWith(NewHasher)=%s, upstream %s", got, want)
		}
		if got := ChecksumPageWith(uh, pgno, data); got != want {
			t.Fatalf("ChecksumPageWith(upstream hasher)=%s, upstream %s", got, want)
		}
	}
	page := randomBytes(rng, 4096)
	for _, h := range []hash.Hash64{NewHasher(), crc64.New(crc64.MakeTable(crc64.ISO))} {
		if n := testing.AllocsPerRun(100, func() { ChecksumPageWith(h, 7, page) }); n != 0 {
			t.Errorf("ChecksumPageWith(%T) allocates %v times", h, n)
		}
		if got, want := ChecksumPageWith(h, 7, page), ChecksumPage(7, page); got != want {
			t.Errorf("ChecksumPageWith(%T)=%s, want %s", h, got, want)
		}
	}
	db := randomBytes(rng, 4096*7)
	want, err := upstream.ChecksumReader(bytes.NewReader(db), 4096)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ChecksumDatabase(bytes.NewReader(db), 4096); err != nil || got != Checksum(want) {
		t.Fatalf("ChecksumDatabase=%s, %v; upstream %s", got, err, Checksum(want))
	}
}

func TestOracle_LockPgnoAndFilenames(t *testing.T) {
	for sz := uint32(512); sz <= MaxPageSize; sz *= 2 {
		if got, want := LockPgno(sz), upstream.LockPgno(sz); got != want {
			t.Fatalf("LockPgno(%d)=%d, upstream %d", sz, got, want)
		}
	}
	for _, r := range [][2]TXID{{1, 1}, {0x10, 0xff}, {1<<64 - 1, 1<<64 - 1}} {
		name := FormatFilename(r[0], r[1])
		if want := upstream.FormatFilename(upstream.TXID(r[0]), upstream.TXID(r[1])); name != want {
			t.Fatalf("FormatFilename=%q, upstream %q", name, want)
		}
		min, max, err := ParseFilename(name)
		if err != nil || min != r[0] || max != r[1] {
			t.Fatalf("ParseFilename(%q)=%s,%s,%v", name, min, max, err)
		}
	}
}

// TestOracle_UpstreamCompactor checks that files produced by the reference
// compactor decode identically with us, and that our Compactor produces
// byte-identical output from the same inputs.
func TestOracle_UpstreamCompactor(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, snapshotFirst := range []bool{true, false} {
		name := "Deltas"
		if snapshotFirst {
			name = "SnapshotFirst"
		}
		t.Run(name, func(t *testing.T) {
			chain := newTestChain(rng, 4096, 8, snapshotFirst)
			var files [][]byte
			for _, f := range chain.files {
				files = append(files, encodeFile(t, f))
			}
			var theirs bytes.Buffer
			c, err := upstream.NewCompactor(&theirs, readers(files))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Compact(context.Background()); err != nil {
				t.Fatalf("upstream Compact: %v", err)
			}
			theirsDec, err := decodeUpstream(theirs.Bytes())
			if err != nil {
				t.Fatalf("upstream decode of upstream compaction: %v", err)
			}
			oursDec, err := decodeFile(theirs.Bytes())
			if err != nil {
				t.Fatalf("decode of upstream compaction: %v", err)
			}
			sameDecoded(t, oursDec, theirsDec)

			var ours bytes.Buffer
			if err := NewCompactor(&ours, readers(files)).Compact(context.Background()); err != nil {
				t.Fatalf("Compact: %v", err)
			}
			if !bytes.Equal(ours.Bytes(), theirs.Bytes()) {
				t.Fatalf("our compaction differs from upstream's (%d vs %d bytes)", ours.Len(), theirs.Len())
			}
		})
	}
}

func readers(files [][]byte) []io.Reader {
	var rs []io.Reader
	for _, b := range files {
		rs = append(rs, bytes.NewReader(b))
	}
	return rs
}
