package ltx

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"testing"
)

// benchPages is the number of 4 KiB pages per benchmarked file (1 MiB).
const benchPages = 256

func benchFile(b *testing.B) *testFile {
	rng := rand.New(rand.NewPCG(71, 72))
	return newTestFile(rng, deltaHeader(4096, 100000, 2, 2, ChecksumFlag|1), seqN(1, benchPages)...)
}

func seqN(from, n uint32) []uint32 {
	a := make([]uint32, n)
	for i := range a {
		a[i] = from + uint32(i)
	}
	return a
}

// BenchmarkEncode measures encoding throughput in page bytes per second.
func BenchmarkEncode(b *testing.B) {
	f := benchFile(b)
	enc := NewEncoder(io.Discard)
	b.SetBytes(int64(len(f.pgnos)) * int64(f.hdr.PageSize))
	b.ReportAllocs()
	for b.Loop() {
		enc.Reset(io.Discard)
		if err := enc.EncodeHeader(f.hdr); err != nil {
			b.Fatal(err)
		}
		for _, p := range f.pgnos {
			if err := enc.EncodePage(PageHeader{Pgno: p}, f.pages[p]); err != nil {
				b.Fatal(err)
			}
		}
		enc.SetPostApplyChecksum(ChecksumFlag | 1)
		if err := enc.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(enc.N())/float64(len(f.pgnos)*int(f.hdr.PageSize)), "ratio")
}

// BenchmarkDecode measures decoding and verification throughput in page bytes
// per second.
func BenchmarkDecode(b *testing.B) {
	f := benchFile(b)
	file := encodeFile(b, f)
	data := make([]byte, f.hdr.PageSize)
	b.SetBytes(int64(len(f.pgnos)) * int64(f.hdr.PageSize))
	b.ReportAllocs()
	for b.Loop() {
		d := NewDecoder(bytes.NewReader(file))
		if err := d.DecodeHeader(); err != nil {
			b.Fatal(err)
		}
		var h PageHeader
		for {
			if err := d.DecodePage(&h, data); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompact measures merging 8 overlapping files, in input page bytes
// per second.
func BenchmarkCompact(b *testing.B) {
	rng := rand.New(rand.NewPCG(73, 74))
	var files [][]byte
	pre := ChecksumFlag | 1
	var total int64
	for i := 0; i < 8; i++ {
		f := newTestFile(rng, deltaHeader(4096, 1000, TXID(2+i), TXID(2+i), pre), seqN(uint32(1+i*16), 64)...)
		f.post = ChecksumFlag | Checksum(10+i)
		pre = f.post
		files = append(files, encodeFile(b, f))
		total += 64 * 4096
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		if err := NewCompactor(io.Discard, readers(files)).Compact(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkChecksumPage(b *testing.B) {
	page := testPage(rand.New(rand.NewPCG(75, 76)), 4096)
	h := NewHasher()
	b.SetBytes(4096)
	b.ReportAllocs()
	for b.Loop() {
		_ = ChecksumPageWith(h, 7, page)
	}
}
