package ltx

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestEncodeDecode_RoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		f    *testFile
	}{
		{"Snapshot", newTestFile(rng, snapshotHeader(4096, 20, 5), seq(20, 4096)...)},
		{"SnapshotEmpty", newTestFile(rng, snapshotHeader(4096, 0, 1))},
		{"Snapshot512", newTestFile(rng, snapshotHeader(512, 3, 1), seq(3, 512)...)},
		{"Snapshot64K", newTestFile(rng, snapshotHeader(65536, 4, 1), seq(4, 65536)...)},
		{"Delta", newTestFile(rng, deltaHeader(4096, 100, 6, 6, ChecksumFlag|77), 1, 2, 50, 99, 100)},
		{"DeltaNoPages", newTestFile(rng, deltaHeader(4096, 100, 6, 8, ChecksumFlag|77))},
		{"DeltaAroundLockPage", newTestFile(rng, deltaHeader(65536, 16390, 3, 3, ChecksumFlag|5), 16384, 16386, 16390)},
		{"NoChecksum", newTestFile(rng, Header{Version: Version, Flags: HeaderFlagNoChecksum, PageSize: 1024, Commit: 9, MinTXID: 4, MaxTXID: 4}, 3, 9)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := encodeFile(t, tc.f)
			got, err := decodeFile(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got.hdr != tc.f.hdr {
				t.Fatalf("header\n got %+v\nwant %+v", got.hdr, tc.f.hdr)
			}
			if !slices.Equal(got.pgnos, tc.f.pgnos) {
				t.Fatalf("pages %v, want %v", got.pgnos, tc.f.pgnos)
			}
			for _, p := range tc.f.pgnos {
				if !bytes.Equal(got.pages[p], tc.f.pages[p]) {
					t.Fatalf("page %d differs", p)
				}
			}
			if err := got.trailer.Validate(got.hdr); err != nil {
				t.Fatal(err)
			}
			if tc.f.hdr.IsSnapshot() {
				var db bytes.Buffer
				if err := NewDecoder(bytes.NewReader(b)).DecodeDatabaseTo(&db); err != nil {
					t.Fatalf("DecodeDatabaseTo: %v", err)
				}
				if want := int(tc.f.hdr.Commit * tc.f.hdr.PageSize); db.Len() != want {
					t.Fatalf("database is %d bytes, want %d", db.Len(), want)
				}
				sum, err := ChecksumDatabase(&db, tc.f.hdr.PageSize)
				if err != nil {
					t.Fatal(err)
				}
				if sum != got.trailer.PostApplyChecksum {
					t.Fatalf("database checksum %s, trailer %s", sum, got.trailer.PostApplyChecksum)
				}
			}
			if err := NewDecoder(bytes.NewReader(b)).Verify(); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestEncoder_Reset(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	f := newTestFile(rng, deltaHeader(4096, 10, 2, 2, ChecksumFlag|1), 3, 4)
	want := encodeFile(t, f)
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	for i := 0; i < 3; i++ {
		buf.Reset()
		enc.Reset(&buf)
		if err := enc.EncodeHeader(f.hdr); err != nil {
			t.Fatal(err)
		}
		for _, p := range f.pgnos {
			if err := enc.EncodePage(PageHeader{Pgno: p}, f.pages[p]); err != nil {
				t.Fatal(err)
			}
		}
		enc.SetPostApplyChecksum(ChecksumFlag | 1)
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Fatalf("round %d: output differs after Reset", i)
		}
	}
}
