package ltx

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// fuzzSeeds returns small valid files of several shapes.
func fuzzSeeds(tb testing.TB) map[string][]byte {
	rng := rand.New(rand.NewPCG(61, 62))
	seeds := map[string][]byte{
		"snapshot":      encodeFile(tb, newTestFile(rng, snapshotHeader(512, 2, 1), 1, 2)),
		"snapshot-zero": encodeFile(tb, newTestFile(rng, snapshotHeader(512, 0, 1))),
		"delta":         encodeFile(tb, newTestFile(rng, deltaHeader(512, 30, 2, 3, ChecksumFlag|5), 3, 30)),
		"nochecksum":    encodeFile(tb, newTestFile(rng, Header{Version: Version, Flags: HeaderFlagNoChecksum, PageSize: 1024, Commit: 2, MinTXID: 3, MaxTXID: 3}, 2)),
	}
	if t, ok := tb.(*testing.T); ok {
		f := newTestFile(rng, snapshotHeader(512, 1, 1), 1)
		seeds["legacy-frame"] = buildLegacy(t, f.hdr, f.pgnos, f.pages, ChecksumFlag.Add(ChecksumPage(1, f.pages[1])))
	}
	return seeds
}

// FuzzDecoder feeds arbitrary bytes to the Decoder. It must never panic or
// hang, and every file it accepts must also be accepted by the reference
// decoder (ours is the stricter) and survive re-encoding unchanged.
func FuzzDecoder(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeFile(b)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a FormatError: %v", err)
			}
			return
		}
		if err := verify(b); err != nil {
			t.Fatalf("decodeFile accepted, Verify failed: %v", err)
		}
		if !hasLegacyFrames(b) {
			if _, err := decodeUpstream(b); err != nil {
				t.Fatalf("we accepted a file the reference decoder rejects: %v", err)
			}
		}
		again, err := decodeFile(encodeFile(t, &testFile{hdr: got.hdr, pgnos: got.pgnos, pages: got.pages, post: got.trailer.PostApplyChecksum}))
		if err != nil {
			t.Fatalf("re-encoded file does not decode: %v", err)
		}
		again.trailer.FileChecksum = got.trailer.FileChecksum // LZ4 sizes may differ
		if !sameAs(again, got) {
			t.Fatal("re-encoded file decodes differently")
		}
	})
}

// hasLegacyFrames reports whether a valid file has a page frame without
// PageHeaderFlagSize.
func hasLegacyFrames(b []byte) bool {
	d := NewDecoder(bytes.NewReader(b))
	if d.DecodeHeader() != nil {
		return false
	}
	data := make([]byte, d.Header().PageSize)
	for {
		var h PageHeader
		if err := d.DecodePage(&h, data); err != nil {
			return false
		}
		if h.Flags&PageHeaderFlagSize == 0 {
			return true
		}
	}
}

// FuzzRoundTrip encodes arbitrary pages and checks both decoders return them.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(0), false, []byte{1, 2, 3}, []byte("hello"))
	f.Add(uint8(3), true, []byte{1, 2, 3, 4, 5}, bytes.Repeat([]byte{0, 1, 2, 3}, 100))
	f.Add(uint8(7), false, []byte{255, 7}, []byte{})
	f.Fuzz(func(t *testing.T, sizeExp uint8, snapshot bool, pgnoBytes []byte, content []byte) {
		pageSize := uint32(512) << (sizeExp % 8)
		var pgnos []uint32
		if snapshot {
			pgnos = seq(uint32(len(pgnoBytes)%20), pageSize)
		} else {
			for _, c := range pgnoBytes {
				if p := uint32(c) + 1; !slices.Contains(pgnos, p) {
					pgnos = append(pgnos, p)
				}
			}
			slices.Sort(pgnos)
		}
		commit := uint32(0)
		if len(pgnos) > 0 {
			commit = pgnos[len(pgnos)-1] + uint32(len(content)%3)*uint32(btoi(!snapshot))
		}
		hdr := deltaHeader(pageSize, commit, 7, 9, ChecksumFlag|3)
		if snapshot {
			hdr = snapshotHeader(pageSize, commit, 4)
		}
		file := &testFile{hdr: hdr, pgnos: pgnos, pages: map[uint32][]byte{}}
		for i, p := range pgnos {
			page := make([]byte, pageSize)
			if len(content) > 0 {
				for j := range page {
					page[j] = content[(i+j)%len(content)] ^ byte(j>>9)
				}
			}
			file.pages[p] = page
		}
		if commit == 0 && !snapshot {
			file.post = ChecksumFlag
		}
		b := encodeFile(t, file)
		ours, err := decodeFile(b)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		theirs, err := decodeUpstream(b)
		if err != nil {
			t.Fatalf("upstream decode: %v", err)
		}
		sameDecoded(t, ours, theirs)
		if ours.hdr != hdr || !slices.Equal(ours.pgnos, pgnos) {
			t.Fatalf("header or pages changed")
		}
		for _, p := range pgnos {
			if !bytes.Equal(ours.pages[p], file.pages[p]) {
				t.Fatalf("page %d differs", p)
			}
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FuzzCompactor merges a valid file with an arbitrary second input. It must
// never panic, and must fail unless the second input is a valid file that
// follows the first.
func FuzzCompactor(f *testing.F) {
	rng := rand.New(rand.NewPCG(63, 64))
	chain := newTestChain(rng, 512, 2, true)
	first := encodeFile(f, chain.files[0])
	f.Add(encodeFile(f, chain.files[1]))
	f.Add(first)
	f.Fuzz(func(t *testing.T, second []byte) {
		var out bytes.Buffer
		err := NewCompactor(&out, []io.Reader{bytes.NewReader(first), bytes.NewReader(second)}).Compact(context.Background())
		if err != nil {
			return
		}
		if _, err := decodeFile(second); err != nil {
			t.Fatalf("compaction accepted an invalid input: %v", err)
		}
		if _, err := decodeFile(out.Bytes()); err != nil {
			t.Fatalf("compaction output does not decode: %v", err)
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzDecoder from fuzzSeeds
// when PAGEFS_WRITE_FUZZ_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("PAGEFS_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set PAGEFS_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecoder")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range fuzzSeeds(t) {
		writeCorpus(t, dir, name, b)
	}
	// A few damaged files too, so the fuzzer starts near the error paths.
	b := fuzzSeeds(t)["delta"]
	for name, edit := range map[string]func([]byte) []byte{
		"truncated":  func(b []byte) []byte { return b[:len(b)/2] },
		"bad-size":   func(b []byte) []byte { binary.BigEndian.PutUint32(b[HeaderSize+PageHeaderSize:], 0xffffff); return b },
		"bad-index":  func(b []byte) []byte { b[len(b)-TrailerSize-9] ^= 1; return b },
		"bad-header": func(b []byte) []byte { b[9] ^= 0x10; return b },
	} {
		writeCorpus(t, dir, name, edit(slices.Clone(b)))
	}

	// FuzzCompactor's second input: the file that follows its first.
	dir = filepath.Join("testdata", "fuzz", "FuzzCompactor")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	chain := newTestChain(rand.New(rand.NewPCG(63, 64)), 512, 2, true)
	next := encodeFile(t, chain.files[1])
	writeCorpus(t, dir, "next", next)
	writeCorpus(t, dir, "next-truncated", next[:len(next)-3])
}

func writeCorpus(t *testing.T, dir, name string, b []byte) {
	body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
	if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
