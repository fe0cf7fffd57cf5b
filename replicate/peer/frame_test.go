package peer

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestFrameHeader_RoundTrips(t *testing.T) {
	for _, h := range []frameHeader{
		{Type: frameLTX, DB: "app.db", Commit: 1_700_000_000_000_000_000, Size: 4096},
		{Type: frameSnapshot, DB: "sub/dir/x.db", Base: 42, Size: 1 << 30},
		{Type: frameHeartbeat},
	} {
		got, err := readFrameHeader(bytes.NewReader(h.marshal()))
		if err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		if got != h {
			t.Fatalf("decoded %+v, want %+v", got, h)
		}
	}
}

func TestFrameHeader_RefusesWhatAPrimaryNeverSends(t *testing.T) {
	for name, h := range map[string]frameHeader{
		"unknown type":           {Type: 'X', DB: "app.db"},
		"heartbeat with payload": {Type: frameHeartbeat, Size: 1},
		"negative size":          {Type: frameLTX, DB: "app.db", Size: -1},
		"huge size":              {Type: frameLTX, DB: "app.db", Size: maxPayload + 1},
		"no name":                {Type: frameLTX},
		"parent":                 {Type: frameSnapshot, DB: "../outside.db"},
		"inner parent":           {Type: frameLTX, DB: "a/../../b.db"},
		"absolute":               {Type: frameLTX, DB: "/etc/x.db"},
		"dot":                    {Type: frameLTX, DB: "."},
		"NUL":                    {Type: frameLTX, DB: "a\x00b"},
	} {
		if got, err := readFrameHeader(bytes.NewReader(h.marshal())); !errors.Is(err, errBadFrame) {
			t.Errorf("%s: decoded %+v, %v; want errBadFrame", name, got, err)
		}
	}
}

func TestFrameHeader_TruncatedIsUnexpectedEOF(t *testing.T) {
	b := (&frameHeader{Type: frameLTX, DB: "app.db", Size: 10}).marshal()
	for n := 1; n < len(b); n++ {
		if _, err := readFrameHeader(bytes.NewReader(b[:n])); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("first %d of %d bytes: %v, want unexpected EOF", n, len(b), err)
		}
	}
	if _, err := readFrameHeader(bytes.NewReader(nil)); err != io.EOF {
		t.Fatalf("empty stream: %v, want EOF", err)
	}
}

func FuzzReadFrameHeader(f *testing.F) {
	f.Add((&frameHeader{Type: frameLTX, DB: "app.db", Commit: 5, Size: 4096}).marshal())
	f.Add((&frameHeader{Type: frameSnapshot, DB: "d/x.db", Base: 3, Size: 1}).marshal())
	f.Add((&frameHeader{Type: frameHeartbeat}).marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := readFrameHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		if h.Size < 0 || h.Size > maxPayload || (h.DB != "" && !validName(h.DB)) {
			t.Fatalf("accepted %+v", h)
		}
		again, err := readFrameHeader(bytes.NewReader(h.marshal()))
		if err != nil || again != h {
			t.Fatalf("%+v re-encodes to %+v, %v", h, again, err)
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(`{"node":"http://a:1","dbs":{"app.db":"0000000000000003/00000000000000ff"},"recent":{"app.db":["0000000000000002/0000000000000001"]},"paused":["x.db"]}`)
	f.Add(`{"dbs":{"a":"nonsense"}}`)
	f.Fuzz(func(t *testing.T, s string) {
		req, err := decodeRequest(strings.NewReader(s))
		if err != nil {
			return
		}
		// Neither may panic, whatever the positions hold.
		_, _ = req.positions()
		for db := range req.Recent {
			_ = req.recent(db)
		}
	})
}
