package ltx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/pierrec/lz4/v4"
)

// buildLegacy writes a file whose page frames use the older layout: no size
// flag, each page an LZ4 frame made by lz4.Writer with opts. The file
// checksum covers page headers and decompressed pages only.
func buildLegacy(t *testing.T, hdr Header, pgnos []uint32, pages map[uint32][]byte, post Checksum, opts ...lz4.Option) []byte {
	t.Helper()
	var out bytes.Buffer
	var h hasher
	out.Write(hdr.appendBinary(nil))
	_, _ = h.Write(hdr.appendBinary(nil))
	var index []byte
	for _, p := range pgnos {
		off := out.Len()
		ph := binary.BigEndian.AppendUint32(nil, p)
		ph = binary.BigEndian.AppendUint16(ph, 0)
		out.Write(ph)
		_, _ = h.Write(ph)
		zw := lz4.NewWriter(&out)
		if err := zw.Apply(opts...); err != nil {
			t.Fatal(err)
		}
		if _, err := zw.Write(pages[p]); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		_, _ = h.Write(pages[p])
		index = binary.AppendUvarint(index, uint64(p))
		index = binary.AppendUvarint(index, uint64(off))
		index = binary.AppendUvarint(index, uint64(out.Len()-off))
	}
	index = binary.AppendUvarint(index, 0)
	index = binary.BigEndian.AppendUint64(index, uint64(len(index)))
	tail := append(make([]byte, PageHeaderSize), index...)
	tail = binary.BigEndian.AppendUint64(tail, uint64(post))
	out.Write(tail)
	_, _ = h.Write(tail)
	out.Write(binary.BigEndian.AppendUint64(nil, uint64(ChecksumFlag|Checksum(h.Sum64()))))
	return out.Bytes()
}

func TestDecoder_LegacyLZ4Frames(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	for _, tc := range []struct {
		name     string
		pageSize uint32
		opts     []lz4.Option
	}{
		{"Default", 4096, nil},
		{"NoChecksum", 4096, []lz4.Option{lz4.ChecksumOption(false)}},
		{"BlockChecksum", 1024, []lz4.Option{lz4.BlockChecksumOption(true)}},
		{"ContentSize", 512, []lz4.Option{lz4.SizeOption(512)}},
		{"LargePage", 65536, []lz4.Option{lz4.BlockSizeOption(lz4.Block64Kb)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFile(rng, snapshotHeader(tc.pageSize, 3, 2), 1, 2, 3)
			f.pages[3] = randomBytes(rng, int(tc.pageSize)) // stored as an uncompressed block
			sum := ChecksumFlag
			for _, p := range f.pgnos {
				sum = sum.Add(ChecksumPage(p, f.pages[p]))
			}
			b := buildLegacy(t, f.hdr, f.pgnos, f.pages, sum, tc.opts...)
			got, err := decodeFile(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			for _, p := range f.pgnos {
				if !bytes.Equal(got.pages[p], f.pages[p]) {
					t.Fatalf("page %d differs", p)
				}
			}
			// The reference decoder reads frames whose footer is 8 bytes
			// (end mark and content checksum), as its encoder wrote them.
			if tc.name == "Default" || tc.name == "BlockChecksum" {
				theirs, err := decodeUpstream(b)
				if err != nil {
					t.Fatalf("upstream decode: %v", err)
				}
				sameDecoded(t, got, theirs)
			}
			for n := 0; n < len(b); n += len(b)/300 + 1 {
				if err := verify(b[:n]); !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("truncated at %d: %v", n, err)
				}
			}
		})
	}
}

func TestDecoder_LegacyLZ4Frames_ErrBadCompression(t *testing.T) {
	rng := rand.New(rand.NewPCG(53, 54))
	f := newTestFile(rng, deltaHeader(4096, 3, 2, 2, ChecksumFlag|1), 2)
	orig := buildLegacy(t, f.hdr, f.pgnos, f.pages, ChecksumFlag|2)
	frame := HeaderSize + PageHeaderSize
	for name, edit := range map[string]func(b []byte){
		"Magic":      func(b []byte) { b[frame] ^= 1 },
		"Version":    func(b []byte) { b[frame+4] ^= 0x80 },
		"Dictionary": func(b []byte) { b[frame+4] |= lz4FlagDictID },
		"BlockMax":   func(b []byte) { b[frame+5] = 0x30 },
		"BlockSize":  func(b []byte) { binary.LittleEndian.PutUint32(b[frame+7:], 5000) },
		"RawTooBig":  func(b []byte) { binary.LittleEndian.PutUint32(b[frame+7:], lz4BlockRaw|4097) },
		"Empty":      func(b []byte) { binary.LittleEndian.PutUint32(b[frame+7:], 0) },
	} {
		t.Run(name, func(t *testing.T) {
			b := bytes.Clone(orig)
			edit(b)
			wantFormatError(t, verify(b), ErrInvalidFile)
		})
	}
}
