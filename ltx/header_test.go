package ltx

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestHeader_MarshalRoundTrip(t *testing.T) {
	h := Header{Version: Version, Flags: 0, PageSize: 4096, Commit: 1234, MinTXID: 5, MaxTXID: 9,
		Timestamp: 1700000000123, PreApplyChecksum: ChecksumFlag | 0xdead, WALOffset: 32, WALSize: 8272,
		WALSalt1: 0xabcdef01, WALSalt2: 0x12345678, NodeID: 1<<64 - 1}
	b, err := h.MarshalBinary()
	if err != nil || len(b) != HeaderSize {
		t.Fatalf("MarshalBinary: %d bytes, %v", len(b), err)
	}
	if string(b[:4]) != Magic {
		t.Fatalf("magic %q", b[:4])
	}
	var got Header
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got != h {
		t.Fatalf("got %+v, want %+v", got, h)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	b[90] = 1
	if err := got.UnmarshalBinary(b); !errors.Is(err, ErrInvalidHeader) {
		t.Fatalf("nonzero reserved byte: %v", err)
	}
	if err := got.UnmarshalBinary(append([]byte("LTX2"), b[4:]...)); !errors.Is(err, ErrInvalidHeader) {
		t.Fatalf("bad magic: %v", err)
	}
	if err := got.UnmarshalBinary(b[:99]); !errors.Is(err, ErrInvalidHeader) {
		t.Fatalf("short: %v", err)
	}
}

func TestHeader_Validate(t *testing.T) {
	valid := Header{Version: Version, PageSize: 4096, Commit: 2, MinTXID: 2, MaxTXID: 3, PreApplyChecksum: ChecksumFlag | 1}
	for _, tc := range []struct {
		name string
		edit func(h *Header)
		msg  string // substring of the error; empty means valid
	}{
		{"Valid", func(h *Header) {}, ""},
		{"Snapshot", func(h *Header) { h.MinTXID, h.PreApplyChecksum = 1, 0 }, ""},
		{"NoChecksum", func(h *Header) { h.Flags, h.PreApplyChecksum = HeaderFlagNoChecksum, 0 }, ""},
		{"WAL", func(h *Header) { h.WALOffset, h.WALSize, h.WALSalt1 = 32, 100, 1 }, ""},
		{"Version", func(h *Header) { h.Version = 2 }, "version"},
		{"Flags", func(h *Header) { h.Flags = 1 }, "unknown flags"},
		{"PageSizeSmall", func(h *Header) { h.PageSize = 256 }, "page size"},
		{"PageSizeLarge", func(h *Header) { h.PageSize = 131072 }, "page size"},
		{"PageSizeOdd", func(h *Header) { h.PageSize = 4097 }, "page size"},
		{"MinTXIDZero", func(h *Header) { h.MinTXID = 0 }, "minimum TXID"},
		{"MaxTXIDZero", func(h *Header) { h.MaxTXID = 0 }, "maximum TXID"},
		{"TXIDOrder", func(h *Header) { h.MinTXID = 4 }, "above maximum"},
		{"WALOffsetNegative", func(h *Header) { h.WALOffset = -1 }, "negative WAL offset"},
		{"WALSizeNegative", func(h *Header) { h.WALOffset, h.WALSize = 32, -1 }, "negative WAL size"},
		{"SaltWithoutOffset", func(h *Header) { h.WALSalt2 = 1 }, "salts"},
		{"SizeWithoutOffset", func(h *Header) { h.WALSize = 1 }, "WAL size"},
		{"SnapshotPreApply", func(h *Header) { h.MinTXID = 1 }, "snapshot has pre-apply"},
		{"NoChecksumPreApply", func(h *Header) { h.Flags = HeaderFlagNoChecksum }, "no-checksum"},
		{"PreApplyMissing", func(h *Header) { h.PreApplyChecksum = 0 }, "pre-apply checksum missing"},
		{"PreApplyFlag", func(h *Header) { h.PreApplyChecksum = 1 }, "lacks the checksum flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := valid
			tc.edit(&h)
			err := h.Validate()
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidHeader) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want ErrInvalidHeader with %q", err, tc.msg)
			}
		})
	}
}

func TestPageHeader_MarshalRoundTrip(t *testing.T) {
	h := PageHeader{Pgno: 0x01020304, Flags: PageHeaderFlagSize}
	b, _ := h.MarshalBinary()
	if string(b) != "\x01\x02\x03\x04\x00\x01" {
		t.Fatalf("encoding %x", b)
	}
	var got PageHeader
	if err := got.UnmarshalBinary(b); err != nil || got != h {
		t.Fatalf("got %+v, %v", got, err)
	}
	if err := (&PageHeader{}).Validate(); !errors.Is(err, ErrInvalidPageHeader) {
		t.Fatalf("zero pgno: %v", err)
	}
	if err := (&PageHeader{Pgno: 1, Flags: 2}).Validate(); !errors.Is(err, ErrInvalidPageHeader) {
		t.Fatalf("bad flags: %v", err)
	}
	if err := got.UnmarshalBinary(b[:5]); !errors.Is(err, ErrInvalidPageHeader) {
		t.Fatalf("short: %v", err)
	}
}

func TestTrailer_MarshalRoundTrip(t *testing.T) {
	tr := Trailer{PostApplyChecksum: ChecksumFlag | 1, FileChecksum: ChecksumFlag | 2}
	b, _ := tr.MarshalBinary()
	if len(b) != TrailerSize {
		t.Fatalf("%d bytes", len(b))
	}
	var got Trailer
	if err := got.UnmarshalBinary(b); err != nil || got != tr {
		t.Fatalf("got %+v, %v", got, err)
	}
	h := Header{Commit: 1}
	for name, bad := range map[string]Trailer{
		"PostApplyMissing": {FileChecksum: ChecksumFlag},
		"PostApplyFlag":    {PostApplyChecksum: 1, FileChecksum: ChecksumFlag},
		"FileMissing":      {PostApplyChecksum: ChecksumFlag},
		"FileFlag":         {PostApplyChecksum: ChecksumFlag, FileChecksum: 1},
	} {
		if err := bad.Validate(h); !errors.Is(err, ErrInvalidTrailer) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := (&Trailer{PostApplyChecksum: ChecksumFlag | 1, FileChecksum: ChecksumFlag}).Validate(Header{}); !errors.Is(err, ErrInvalidTrailer) {
		t.Errorf("empty database with non-empty checksum: %v", err)
	}
	if err := (&Trailer{PostApplyChecksum: 1, FileChecksum: ChecksumFlag}).Validate(Header{Flags: HeaderFlagNoChecksum}); !errors.Is(err, ErrInvalidTrailer) {
		t.Errorf("no-checksum with post-apply: %v", err)
	}
}

func TestTXIDChecksumPos_ParseString(t *testing.T) {
	if s := TXID(0x1f).String(); s != "000000000000001f" {
		t.Fatal(s)
	}
	if id, err := ParseTXID("00000000000000FF"); err != nil || id != 255 {
		t.Fatal(id, err)
	}
	for _, bad := range []string{"", "1f", "000000000000001g", "+00000000000001f", "0000000000000001f"} {
		if _, err := ParseTXID(bad); err == nil {
			t.Errorf("ParseTXID(%q) succeeded", bad)
		}
		if _, err := ParseChecksum(bad); err == nil {
			t.Errorf("ParseChecksum(%q) succeeded", bad)
		}
	}
	c := ChecksumFlag | 0xabc
	if got, err := ParseChecksum(c.String()); err != nil || got != c {
		t.Fatal(got, err)
	}
	p := Pos{TXID: 12, PostApplyChecksum: c}
	if s := p.String(); s != "000000000000000c/8000000000000abc" {
		t.Fatal(s)
	}
	if got, err := ParsePos(p.String()); err != nil || got != p {
		t.Fatal(got, err)
	}
	if _, err := ParsePos("000000000000000c-8000000000000abc"); err == nil {
		t.Fatal("ParsePos accepted a bad separator")
	}
	if !(Pos{}).IsZero() || p.IsZero() {
		t.Fatal("IsZero")
	}
}

func TestFilename(t *testing.T) {
	if s := FormatFilename(1, 0x2a); s != "0000000000000001-000000000000002a.ltx" {
		t.Fatal(s)
	}
	for _, bad := range []string{"0000000000000001-000000000000002A.ltx", "0000000000000001-000000000000002a.lt",
		"0000000000000001_000000000000002a.ltx", "1-2.ltx", "x/0000000000000001-000000000000002a.ltx"} {
		if _, _, err := ParseFilename(bad); err == nil {
			t.Errorf("ParseFilename(%q) succeeded", bad)
		}
	}
}

func TestLockPgno(t *testing.T) {
	for sz, want := range map[uint32]uint32{512: 2097153, 1024: 1048577, 4096: 262145, 65536: 16385} {
		if got := LockPgno(sz); got != want {
			t.Errorf("LockPgno(%d)=%d, want %d", sz, got, want)
		}
	}
	h := Header{PageSize: 4096}
	if h.LockPgno() != 262145 {
		t.Fatal(h.LockPgno())
	}
}

func TestFileInfoSliceIterator(t *testing.T) {
	a := []*FileInfo{{Level: 1, MinTXID: 5, MaxTXID: 9}, {Level: 0, MinTXID: 3, MaxTXID: 3}, {Level: 0, MinTXID: 1, MaxTXID: 2, CreatedAt: time.Unix(1, 0)}}
	itr := NewFileInfoSliceIterator(a)
	if itr.Item() != nil {
		t.Fatal("Item before Next")
	}
	got, err := SliceFileIterator(itr)
	if err != nil || len(got) != 3 || got[0].MinTXID != 1 || got[1].MinTXID != 3 || got[2].Level != 1 {
		t.Fatalf("%v %v", got, err)
	}
	if itr.Next() || itr.Item() != nil {
		t.Fatal("Next after end")
	}
	if p := got[2].PreApplyPos(); p.TXID != 4 {
		t.Fatal(p)
	}
	if p := got[2].Pos(); p.TXID != 9 {
		t.Fatal(p)
	}
}
