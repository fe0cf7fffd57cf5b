package mount

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// TestWAL_CommitFrameBeyondTheWALIndexIsNotCaptured: a writer killed after
// writing its commit frame but before publishing the wal-index header
// leaves a transaction that SQLite never reported committed and that the
// next writer overwrites. Capture must stop at the wal-index's mxFrame
// while connections are live, and the chain must then follow what SQLite
// actually committed.
func TestWAL_CommitFrameBeyondTheWALIndexIsNotCaptured(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	defer s.Close()
	path := filepath.Join(s.Root(), "x.db")
	// SQLite writes the backing files directly here; the store follows by
	// reading them, as it does for passthrough WAL writes.
	conn, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetMaxOpenConns(1)
	mustExec := func(q string) {
		t.Helper()
		if _, err := conn.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	mustExec(`CREATE TABLE t (v)`)
	mustExec(`INSERT INTO t VALUES ('committed')`)
	f, err := s.OpenFile("x.db", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	db := s.DB("x.db")
	head := db.Pos()

	// Forge the dead writer's transaction: a valid commit frame after the
	// last one the wal-index publishes.
	walPath := path + "-wal"
	wal, err := os.ReadFile(walPath)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := parseWALHeader(wal)
	if err != nil {
		t.Fatal(err)
	}
	frameSize := walFrameHeaderSize + int(hdr.pageSize)
	last := parseWALFrameHeader(wal[len(wal)-frameSize:])
	frame := make([]byte, frameSize)
	copy(frame[walFrameHeaderSize:], wal[len(wal)-frameSize+walFrameHeaderSize:]) // the same page, changed below
	frame[walFrameHeaderSize+100] ^= 0xff
	binary.BigEndian.PutUint32(frame[0:], last.pgno)
	binary.BigEndian.PutUint32(frame[4:], last.commit) // a commit frame
	binary.BigEndian.PutUint32(frame[8:], hdr.salt1)
	binary.BigEndian.PutUint32(frame[12:], hdr.salt2)
	s1, s2 := walChecksum(hdr.bigEndianCksum, last.cksum1, last.cksum2, frame[:8])
	s1, s2 = walChecksum(hdr.bigEndianCksum, s1, s2, frame[walFrameHeaderSize:])
	binary.BigEndian.PutUint32(frame[16:], s1)
	binary.BigEndian.PutUint32(frame[20:], s2)
	w, err := os.OpenFile(walPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(frame, int64(len(wal))); err != nil {
		t.Fatal(err)
	}
	w.Close()

	if _, err := db.Capture(); err != nil {
		t.Fatal(err)
	}
	if got := db.Pos(); got != head {
		t.Fatalf("captured the dead writer's frame: head %v, want %v", got, head)
	}

	// The next writer overwrites it; the chain follows SQLite.
	mustExec(`INSERT INTO t VALUES ('next')`)
	if _, err := db.Capture(); err != nil {
		t.Fatal(err)
	}
	if db.Pos().TXID != head.TXID+1 {
		t.Fatalf("head %v after the next commit, want TXID %s", db.Pos(), head.TXID+1)
	}
	mustExec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "replay")
	if _, err := ReplayChain(db.LTXDir(), out, true); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want) {
		t.Fatalf("chain replays to %d bytes that differ from SQLite's %d", len(got), len(want))
	}
}
