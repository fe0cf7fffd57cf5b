package ltx

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// testPage returns a page of pageSize bytes that compresses partly, like a
// SQLite b-tree page: a header, random "records", repeated text and free
// space (zeros).
func testPage(rng *rand.Rand, pageSize uint32) []byte {
	b := make([]byte, pageSize)
	n := int(pageSize)
	for i := 0; i < n/8; i++ {
		b[i] = byte(rng.Uint32())
	}
	text := []byte("customer name address city country phone ")
	for i := n / 2; i < n*3/4; i++ {
		b[i] = text[(i+int(rng.Uint32()%3))%len(text)]
	}
	for i := n * 3 / 4; i < n*7/8; i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// testFile describes a file for encodeFile.
type testFile struct {
	hdr   Header
	pgnos []uint32
	pages map[uint32][]byte
	post  Checksum // zero: let the encoder compute it (snapshots) or use ChecksumFlag|1
}

// newTestFile returns a file with the given pages filled from rng.
func newTestFile(rng *rand.Rand, hdr Header, pgnos ...uint32) *testFile {
	f := &testFile{hdr: hdr, pgnos: pgnos, pages: map[uint32][]byte{}}
	for _, p := range pgnos {
		f.pages[p] = testPage(rng, hdr.PageSize)
	}
	return f
}

// seq returns the pages 1..n, skipping the lock page for pageSize.
func seq(n, pageSize uint32) []uint32 {
	var a []uint32
	for p := uint32(1); p <= n; p++ {
		if p != LockPgno(pageSize) {
			a = append(a, p)
		}
	}
	return a
}

// encodeFile encodes f with our Encoder and returns the bytes.
func encodeFile(tb testing.TB, f *testFile) []byte {
	tb.Helper()
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	if err := enc.EncodeHeader(f.hdr); err != nil {
		tb.Fatalf("EncodeHeader: %v", err)
	}
	for _, p := range f.pgnos {
		if err := enc.EncodePage(PageHeader{Pgno: p}, f.pages[p]); err != nil {
			tb.Fatalf("EncodePage(%d): %v", p, err)
		}
	}
	if f.post != 0 {
		enc.SetPostApplyChecksum(f.post)
	} else if !f.hdr.IsSnapshot() && !f.hdr.NoChecksum() {
		enc.SetPostApplyChecksum(ChecksumFlag | 1)
	}
	if err := enc.Close(); err != nil {
		tb.Fatalf("Close: %v", err)
	}
	if enc.N() != int64(buf.Len()) {
		tb.Fatalf("N()=%d, wrote %d", enc.N(), buf.Len())
	}
	return buf.Bytes()
}

// decoded is everything a Decoder returns for a file.
type decoded struct {
	hdr     Header
	pgnos   []uint32
	pages   map[uint32][]byte
	trailer Trailer
}

// decodeFile decodes b with our Decoder.
func decodeFile(b []byte) (*decoded, error) {
	d := NewDecoder(bytes.NewReader(b))
	if err := d.DecodeHeader(); err != nil {
		return nil, err
	}
	out := &decoded{hdr: d.Header(), pages: map[uint32][]byte{}}
	for {
		var h PageHeader
		data := make([]byte, out.hdr.PageSize)
		if err := d.DecodePage(&h, data); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		out.pgnos = append(out.pgnos, h.Pgno)
		out.pages[h.Pgno] = data
	}
	if err := d.Close(); err != nil {
		return nil, err
	}
	out.trailer = d.Trailer()
	return out, nil
}

// snapshotHeader returns a snapshot header for commit pages of pageSize.
func snapshotHeader(pageSize, commit uint32, maxTXID TXID) Header {
	return Header{Version: Version, PageSize: pageSize, Commit: commit, MinTXID: 1, MaxTXID: maxTXID, Timestamp: 1700000000123}
}

// deltaHeader returns a non-snapshot header.
func deltaHeader(pageSize, commit uint32, min, max TXID, pre Checksum) Header {
	return Header{Version: Version, PageSize: pageSize, Commit: commit, MinTXID: min, MaxTXID: max,
		Timestamp: 1700000000456, PreApplyChecksum: pre, WALOffset: 32, WALSize: 4152, WALSalt1: 7, WALSalt2: 9, NodeID: 42}
}
