package ltx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/pierrec/lz4/v4"
)

// rawPage is one page frame for buildRaw.
type rawPage struct {
	pgno  uint32
	data  []byte
	block []byte // LZ4 block to store instead of compressing data
}

// rawIndex is one page index record.
type rawIndex struct{ pgno, offset, size uint64 }

// buildRaw writes an LTX file without the Encoder's checks, with a correct
// file checksum, so tests can reach the Decoder's structural checks. edit,
// if set, may change the index records before they are written.
func buildRaw(hdr Header, pages []rawPage, post Checksum, edit func([]rawIndex) []rawIndex) []byte {
	var out bytes.Buffer
	var h hasher
	write := func(b []byte, hash bool) {
		out.Write(b)
		if hash {
			_, _ = h.Write(b)
		}
	}
	write(hdr.appendBinary(nil), true)
	var index []rawIndex
	for _, p := range pages {
		off := out.Len()
		block := p.block
		if block == nil {
			block = make([]byte, lz4.CompressBlockBound(len(p.data)))
			n, _ := lz4.CompressBlock(p.data, block, nil)
			block = block[:n]
		}
		fh := binary.BigEndian.AppendUint32(nil, p.pgno)
		fh = binary.BigEndian.AppendUint16(fh, PageHeaderFlagSize)
		fh = binary.BigEndian.AppendUint32(fh, uint32(len(block)))
		write(fh, true)
		write(block, false)
		_, _ = h.Write(p.data)
		index = append(index, rawIndex{uint64(p.pgno), uint64(off), uint64(out.Len() - off)})
	}
	write(make([]byte, PageHeaderSize), true)
	if edit != nil {
		index = edit(index)
	}
	var ib []byte
	for _, e := range index {
		ib = binary.AppendUvarint(ib, e.pgno)
		ib = binary.AppendUvarint(ib, e.offset)
		ib = binary.AppendUvarint(ib, e.size)
	}
	ib = binary.AppendUvarint(ib, 0)
	ib = binary.BigEndian.AppendUint64(ib, uint64(len(ib)))
	write(ib, true)
	write(binary.BigEndian.AppendUint64(nil, uint64(post)), true)
	write(binary.BigEndian.AppendUint64(nil, uint64(ChecksumFlag|Checksum(h.Sum64()))), false)
	return out.Bytes()
}

// verify runs Verify on b.
func verify(b []byte) error { return NewDecoder(bytes.NewReader(b)).Verify() }

// wantFormatError fails unless err is a *FormatError matching target.
func wantFormatError(t *testing.T, err, target error) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidFile) || !errors.Is(err, target) {
		t.Fatalf("got %v, want a FormatError matching %v", err, target)
	}
}

func TestDecoder_BuildRawIsValid(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	p := testPage(rng, 512)
	b := buildRaw(deltaHeader(512, 9, 2, 2, ChecksumFlag|1), []rawPage{{pgno: 3, data: p}, {pgno: 9, data: p}}, ChecksumFlag|2, nil)
	if err := verify(b); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeUpstream(b); err != nil {
		t.Fatalf("upstream: %v", err)
	}
}

func TestDecoder_Errors(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 44))
	p := testPage(rng, 512)
	delta := deltaHeader(512, 9, 2, 2, ChecksumFlag|1)
	post := ChecksumFlag | 2
	pages := func(pgnos ...uint32) []rawPage {
		var a []rawPage
		for _, n := range pgnos {
			a = append(a, rawPage{pgno: n, data: p})
		}
		return a
	}
	for _, tc := range []struct {
		name   string
		file   []byte
		target error
	}{
		{"ErrOutOfOrderPages", buildRaw(delta, pages(3, 2), post, nil), ErrOutOfOrderPages},
		{"ErrOutOfOrderPages/Duplicate", buildRaw(delta, pages(3, 3), post, nil), ErrOutOfOrderPages},
		{"ErrPageOutOfRange", buildRaw(delta, pages(10), post, nil), ErrPageOutOfRange},
		{"ErrLockPage", buildRaw(deltaHeader(65536, 20000, 2, 2, ChecksumFlag|1),
			[]rawPage{{pgno: LockPgno(65536), data: make([]byte, 65536)}}, post, nil), ErrLockPage},
		{"ErrSnapshotIncomplete/Gap", buildRaw(snapshotHeader(512, 3, 1), pages(1, 3), post, nil), ErrSnapshotIncomplete},
		{"ErrSnapshotIncomplete/Start", buildRaw(snapshotHeader(512, 3, 1), pages(2, 3), post, nil), ErrSnapshotIncomplete},
		{"ErrSnapshotIncomplete/End", buildRaw(snapshotHeader(512, 3, 1), pages(1, 2), post, nil), ErrSnapshotIncomplete},
		{"ErrPostApplyChecksumMismatch", buildRaw(snapshotHeader(512, 2, 1), pages(1, 2), post, nil), ErrPostApplyChecksumMismatch},
		{"ErrInvalidTrailer", buildRaw(delta, pages(1), 5, nil), ErrInvalidTrailer},
		{"ErrInvalidTrailer/EmptyDatabase", buildRaw(deltaHeader(512, 0, 2, 2, ChecksumFlag|1), nil, post, nil), ErrInvalidTrailer},
		{"ErrBadCompression/Short", buildRaw(delta, []rawPage{{pgno: 1, data: p, block: []byte{0x10, 'x'}}}, post, nil), ErrBadCompression},
		{"ErrBadCompression/Long", buildRaw(delta, []rawPage{{pgno: 1, data: p, block: literalBlock(513)}}, post, nil), ErrBadCompression},
		{"ErrBadCompression/Garbage", buildRaw(delta, []rawPage{{pgno: 1, data: p, block: []byte{0xff, 0xff, 0xff}}}, post, nil), ErrBadCompression},
		{"ErrBadCompression/Empty", buildRaw(delta, []rawPage{{pgno: 1, data: p, block: []byte{}}}, post, nil), ErrBadCompression},
		{"ErrBadCompression/TooLarge", buildRaw(delta, []rawPage{{pgno: 1, data: p, block: make([]byte, 1000)}}, post, nil), ErrBadCompression},
		{"ErrPageIndexMismatch/Offset", buildRaw(delta, pages(1, 2), post, func(a []rawIndex) []rawIndex {
			a[1].offset++
			return a
		}), ErrPageIndexMismatch},
		{"ErrPageIndexMismatch/Sizes", buildRaw(delta, []rawPage{{pgno: 1, data: p}, {pgno: 2, data: make([]byte, 512)}}, post, func(a []rawIndex) []rawIndex {
			a[0].size, a[1].size = a[1].size, a[0].size
			a[1].offset = a[0].offset + a[0].size
			return a
		}), ErrPageIndexMismatch},
		{"ErrPageIndexMismatch/Pgno", buildRaw(delta, pages(1, 2), post, func(a []rawIndex) []rawIndex {
			a[1].pgno = 3
			return a
		}), ErrPageIndexMismatch},
		{"ErrPageIndexMismatch/Missing", buildRaw(delta, pages(1, 2), post, func(a []rawIndex) []rawIndex { return a[:1] }), ErrPageIndexMismatch},
		{"ErrPageIndexMismatch/Extra", buildRaw(delta, pages(1, 2), post, func(a []rawIndex) []rawIndex {
			return append(a, rawIndex{5, a[1].offset + a[1].size, 10})
		}), ErrPageIndexMismatch},
		{"ErrPageIndexMismatch/Order", buildRaw(delta, pages(1, 2), post, func(a []rawIndex) []rawIndex {
			a[0], a[1] = a[1], a[0]
			return a
		}), ErrPageIndexMismatch},
		{"ErrTrailingData", append(buildRaw(delta, pages(1), post, nil), 0), ErrTrailingData},
		{"ErrInvalidHeader/NotLTX", []byte(strings.Repeat("SQLite format 3\x00", 20)), ErrInvalidHeader},
		{"ErrInvalidHeader/Fields", buildRaw(Header{Version: Version, PageSize: 1000, MinTXID: 1, MaxTXID: 1}, nil, post, nil), ErrInvalidHeader},
		{"ErrInvalidPageHeader", buildRaw(delta, nil, post, nil)[:HeaderSize], io.ErrUnexpectedEOF},
		{"Empty", nil, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantFormatError(t, verify(tc.file), tc.target)
		})
	}
}

// literalBlock returns an LZ4 block of n literal bytes.
func literalBlock(n int) []byte {
	b := []byte{0xf0}
	for r := n - 15; ; r -= 255 {
		if r < 255 {
			b = append(b, byte(r))
			break
		}
		b = append(b, 255)
	}
	return append(b, make([]byte, n)...)
}

func TestDecoder_HostileSizes(t *testing.T) {
	// A compressed size of 4 GiB must be rejected before any allocation.
	hdr := deltaHeader(65536, 9, 2, 2, ChecksumFlag|1)
	b := hdr.appendBinary(nil)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint16(b, PageHeaderFlagSize)
	b = binary.BigEndian.AppendUint32(b, 0xffffffff)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := verify(b)
	runtime.ReadMemStats(&after)
	wantFormatError(t, err, ErrBadCompression)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("allocated %d bytes", n)
	}

	// An index claiming more records than pages stops at the first extra.
	var idx []byte
	for i := 0; i < 1000; i++ {
		idx = binary.AppendUvarint(idx, uint64(i+1))
	}
	dh := deltaHeader(512, 9, 2, 2, ChecksumFlag|1)
	f := append(dh.appendBinary(nil), make([]byte, PageHeaderSize)...)
	wantFormatError(t, verify(append(f, idx...)), ErrPageIndexMismatch)

	// A varint longer than 64 bits.
	wantFormatError(t, verify(append(f, bytes.Repeat([]byte{0xff}, 11)...)), ErrPageIndexMismatch)
}

func TestDecoder_ReadError(t *testing.T) {
	boom := errors.New("boom")
	err := NewDecoder(iotest.ErrReader(boom)).Verify()
	if !errors.Is(err, boom) || errors.Is(err, ErrInvalidFile) {
		t.Fatalf("got %v", err)
	}
}

// corruptFiles returns valid files to damage: a snapshot and a delta.
func corruptFiles(t *testing.T) map[string][]byte {
	rng := rand.New(rand.NewPCG(45, 46))
	return map[string][]byte{
		"Snapshot": encodeFile(t, newTestFile(rng, snapshotHeader(512, 3, 2), 1, 2, 3)),
		"Delta":    encodeFile(t, newTestFile(rng, deltaHeader(512, 40, 3, 4, ChecksumFlag|9), 2, 17, 40)),
	}
}

// TestDecoder_BitFlips flips every bit of valid files. Each must fail to
// decode, except a flip inside an LZ4 payload that still decodes to the same
// pages (LZ4 can encode the same bytes several ways; the file checksum covers
// the decoded pages).
func TestDecoder_BitFlips(t *testing.T) {
	for name, orig := range corruptFiles(t) {
		t.Run(name, func(t *testing.T) {
			want, err := decodeFile(orig)
			if err != nil {
				t.Fatal(err)
			}
			payload := payloadRanges(t, orig)
			regions := map[string]int{}
			for i := range orig {
				for bit := 0; bit < 8; bit++ {
					b := slices.Clone(orig)
					b[i] ^= 1 << bit
					got, err := decodeFile(b)
					if err == nil {
						if !payload(i) || !sameAs(got, want) {
							t.Fatalf("flip of byte %d bit %d (%s) not detected", i, bit, region(orig, i))
						}
						continue
					}
					var fe *FormatError
					if !errors.As(err, &fe) {
						t.Fatalf("flip of byte %d bit %d: %v is not a FormatError", i, bit, err)
					}
					regions[region(orig, i)]++
				}
			}
			for _, r := range []string{"header", "page data", "page index", "trailer"} {
				if regions[r] == 0 {
					t.Errorf("no detected flips in %s", r)
				}
			}
		})
	}
}

// region names the part of a file that holds byte i.
func region(b []byte, i int) string {
	indexSize := int(binary.BigEndian.Uint64(b[len(b)-TrailerSize-8:]))
	switch {
	case i < HeaderSize:
		return "header"
	case i >= len(b)-TrailerSize:
		return "trailer"
	case i >= len(b)-TrailerSize-8-indexSize:
		return "page index"
	default:
		return "page data"
	}
}

// payloadRanges returns a func reporting whether byte i of a valid file is in
// an LZ4 payload.
func payloadRanges(t *testing.T, b []byte) func(int) bool {
	d := NewDecoder(bytes.NewReader(b))
	if err := d.DecodeHeader(); err != nil {
		t.Fatal(err)
	}
	var spans [][2]int64
	data := make([]byte, d.Header().PageSize)
	for {
		var h PageHeader
		if err := d.DecodePage(&h, data); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		off, size := d.LastFrame()
		spans = append(spans, [2]int64{off + frameHeaderSize, off + size})
	}
	return func(i int) bool {
		for _, s := range spans {
			if int64(i) >= s[0] && int64(i) < s[1] {
				return true
			}
		}
		return false
	}
}

func sameAs(a, b *decoded) bool {
	if a.hdr != b.hdr || !slices.Equal(a.pgnos, b.pgnos) || a.trailer != b.trailer {
		return false
	}
	for _, p := range a.pgnos {
		if !bytes.Equal(a.pages[p], b.pages[p]) {
			return false
		}
	}
	return true
}

// TestDecoder_Truncated cuts valid files at every length: each must fail
// with a truncation error (or, at 0, an empty-file error).
func TestDecoder_Truncated(t *testing.T) {
	for name, orig := range corruptFiles(t) {
		t.Run(name, func(t *testing.T) {
			for n := 0; n < len(orig); n++ {
				err := verify(orig[:n])
				wantFormatError(t, err, io.ErrUnexpectedEOF)
				if n == 0 && !strings.Contains(err.Error(), "empty file") {
					t.Fatalf("empty: %v", err)
				}
			}
		})
	}
}

func TestDecoder_States(t *testing.T) {
	b := corruptFiles(t)["Delta"]
	d := NewDecoder(bytes.NewReader(b))
	page := make([]byte, 512)
	var h PageHeader
	if err := d.DecodePage(&h, page); err == nil {
		t.Fatal("DecodePage before DecodeHeader succeeded")
	}
	if err := d.Close(); err == nil {
		t.Fatal("Close before DecodeHeader succeeded")
	}
	if err := d.DecodeHeader(); err != nil {
		t.Fatal(err)
	}
	if err := d.DecodeHeader(); err == nil {
		t.Fatal("second DecodeHeader succeeded")
	}
	if err := d.DecodePage(&h, page[:10]); !errors.Is(err, ErrPageSize) {
		t.Fatalf("short buffer: %v", err)
	}
	if err := d.DecodePage(&h, page); err != nil || h.Pgno != 2 {
		t.Fatalf("first page: %d %v", h.Pgno, err)
	}
	// Close drains the remaining pages.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if d.PageN() != 3 || d.N() != int64(len(b)) {
		t.Fatalf("PageN=%d N=%d", d.PageN(), d.N())
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := d.DecodePage(&h, page); !errors.Is(err, ErrDecoderClosed) {
		t.Fatal(err)
	}
	if pos := d.PostApplyPos(); pos.TXID != 4 || pos.PostApplyChecksum != ChecksumFlag|1 {
		t.Fatal(pos)
	}

	// Errors are sticky.
	bad := slices.Clone(b)
	bad[HeaderSize+3] ^= 0xff
	d = NewDecoder(bytes.NewReader(bad))
	if err := d.DecodeHeader(); err != nil {
		t.Fatal(err)
	}
	err1 := d.DecodePage(&h, page)
	if err1 == nil {
		t.Fatal("corrupt page decoded")
	}
	if err2 := d.DecodePage(&h, page); err2 != err1 {
		t.Fatalf("second error %v, first %v", err2, err1)
	}
	if err3 := d.Close(); err3 != err1 {
		t.Fatalf("Close error %v, first %v", err3, err1)
	}
}

func TestDecoder_DecodeDatabaseTo_NotSnapshot(t *testing.T) {
	b := corruptFiles(t)["Delta"]
	if err := NewDecoder(bytes.NewReader(b)).DecodeDatabaseTo(io.Discard); err == nil || !strings.Contains(err.Error(), "not a snapshot") {
		t.Fatal(err)
	}
}

func TestFormatError_Message(t *testing.T) {
	e := &FormatError{Offset: 10, Pgno: 3, Err: ErrBadCompression}
	if s := e.Error(); s != "bad compressed page data (at offset 10, page 3)" {
		t.Fatal(s)
	}
	e.Pgno = 0
	if s := e.Error(); s != "bad compressed page data (at offset 10)" {
		t.Fatal(s)
	}
}
