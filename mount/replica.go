package mount

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/pagefs/pagefs/ltx"
)

// This file holds what a read-only replica needs from the core: pagefs
// applies the primary's transactions through its own mount with SQLite, and
// these methods let it capture each one at once, make page 1 exactly the
// primary's, and restart a chain from the primary's snapshot.

// Capture captures the transactions SQLite has committed to the database's
// WAL and not yet captured, without waiting for the poller, and returns the
// head of the chain. Transactions in rollback-journal modes are captured as
// they commit, so there it only returns the head.
func (db *DB) Capture() (ltx.Pos, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.failed != nil {
		return db.pos, db.failed
	}
	if db.walExists {
		if err := db.captureWAL(capturePoll); err != nil {
			return db.pos, err
		}
	}
	return db.pos, nil
}

// CommitWAL runs commit, which must commit a write transaction that pagefs's
// own SQLite connection holds on the database in WAL mode, then gives page 1
// the primary's bytes and captures the transaction. It returns the head of
// the chain after the capture.
//
// SQLite rewrites the change counter and version number (bytes 24-27 and
// 92-99) of page 1 whenever a transaction writes it, from the writing
// connection's own state, so an applied page 1 would differ from the
// primary's in those bytes. CommitWAL writes page1 (the primary's version,
// or nil if the transaction did not write page 1) over the frame SQLite
// wrote and recomputes the WAL checksums of the transaction's frames, before
// any capture can read them. Readers that read page 1 in between see the
// rewritten header fields only, which they do not use in WAL mode.
//
// The caller must have disabled auto-checkpoints on its connection (a
// checkpoint inside commit would copy the frame before it is corrected) and
// must have read from the database in this transaction, so that the WAL is
// already open: commit runs under the database's lock, and nothing it does
// may need the FUSE layer to take it.
func (db *DB) CommitWAL(commit func() error, page1 []byte) (ltx.Pos, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.failed != nil {
		return db.pos, db.failed
	}
	if err := commit(); err != nil {
		return db.pos, err
	}
	if !db.walExists {
		return db.pos, errors.New("CommitWAL: the database has no WAL")
	}
	if db.wal.f == nil {
		f, err := os.Open(db.walPath())
		if err != nil {
			return db.pos, err
		}
		db.wal.f = f
	}
	if page1 != nil {
		if err := db.patchPage1(page1); err != nil {
			return db.pos, fmt.Errorf("database %s: correct page 1 in the WAL: %w", db.name, err)
		}
	}
	if err := db.captureWAL(capturePoll); err != nil {
		return db.pos, err
	}
	return db.pos, nil
}

// patchPage1 replaces the newest uncaptured page-1 frame of the WAL with
// page1 and recomputes the checksum chain from that frame to the end of the
// committed frames. Nothing has captured these frames yet (db.mu is held).
func (db *DB) patchPage1(page1 []byte) error {
	scan, err := db.scanWAL(capturePoll)
	if err != nil {
		return err
	}
	if scan == nil {
		return errors.New("no committed frames after the capture cursor")
	}
	off1, ok := scan.pages[1]
	if !ok {
		return nil // SQLite did not write page 1
	}
	ps := int64(scan.hdr.pageSize)
	if int64(len(page1)) != ps {
		return fmt.Errorf("page 1 of %d bytes, WAL page size %d", len(page1), ps)
	}
	f, err := os.OpenFile(db.walPath(), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	frameSize := walFrameHeaderSize + ps
	buf := make([]byte, frameSize)
	s1, s2 := db.wal.s1, db.wal.s2
	for off := db.wal.offset; off < scan.end; off += frameSize {
		if _, err := f.ReadAt(buf, off); err != nil {
			return fmt.Errorf("read WAL frame at %d: %w", off, err)
		}
		if off == off1 {
			if bytes.Equal(buf[walFrameHeaderSize:], page1) {
				return nil
			}
			copy(buf[walFrameHeaderSize:], page1)
		}
		s1, s2 = walChecksum(scan.hdr.bigEndianCksum, s1, s2, buf[:8])
		s1, s2 = walChecksum(scan.hdr.bigEndianCksum, s1, s2, buf[walFrameHeaderSize:])
		if off < off1 {
			continue
		}
		binary.BigEndian.PutUint32(buf[16:20], s1)
		binary.BigEndian.PutUint32(buf[20:24], s2)
		n := int64(walFrameHeaderSize)
		if off == off1 {
			n = frameSize
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("write WAL frame at %d: %w", off, err)
		}
	}
	return db.setSHMFrameChecksum(scan.end, frameSize, s1, s2)
}

// setSHMFrameChecksum puts the WAL's new running checksum into the
// wal-index header, where SQLite's next writer continues the chain from
// (aFrameCksum), and re-seals the header: the second copy, then the first,
// as SQLite writes them. Connections see a changed header and reload it.
func (db *DB) setSHMFrameChecksum(end, frameSize int64, s1, s2 uint32) error {
	f, err := os.OpenFile(db.shmPath(), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [shmHeaderSize]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return fmt.Errorf("read wal-index header: %w", err)
	}
	if _, ok := parseSHMHeader(b[:]); !ok {
		return errors.New("wal-index header is not consistent")
	}
	if mx := int64(binary.LittleEndian.Uint32(b[16:20])); walHeaderSize+mx*frameSize != end {
		return fmt.Errorf("wal-index says %d frames, the transaction ends at WAL offset %d", mx, end)
	}
	h := b[:48]
	binary.LittleEndian.PutUint32(h[24:28], s1)
	binary.LittleEndian.PutUint32(h[28:32], s2)
	c1, c2 := walChecksum(false, 0, 0, h[:40])
	binary.LittleEndian.PutUint32(h[40:44], c1)
	binary.LittleEndian.PutUint32(h[44:48], c2)
	if _, err := f.WriteAt(h, 48); err != nil {
		return err
	}
	_, err = f.WriteAt(h, 0)
	return err
}

// ResetChain makes the primary's snapshot (the LTX file at path, which
// starts at TXID 1) the database's whole chain, after the replica has made
// its database equal to it. Every file of the old chain is deleted; the
// returned position is the snapshot's. It fails, changing nothing, if the
// database's checksum is not the snapshot's.
//
// The snapshot is re-encoded with the WAL position of the chain's current
// head, so that capture resumes where it is.
func (db *DB) ResetChain(path string) (ltx.Pos, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	src, err := os.Open(path)
	if err != nil {
		return db.pos, err
	}
	defer src.Close()
	dec := ltx.NewDecoder(src)
	if err := dec.Verify(); err != nil {
		return db.pos, fmt.Errorf("snapshot %s: %w", path, err)
	}
	hdr, trailer := dec.Header(), dec.Trailer()
	if !hdr.IsSnapshot() {
		return db.pos, fmt.Errorf("%s starts at TXID %s, not a snapshot", path, hdr.MinTXID)
	}
	if trailer.PostApplyChecksum != db.pos.PostApplyChecksum || hdr.PageSize != db.pageSize || hdr.Commit != db.commit {
		return db.pos, fmt.Errorf("database %s is at %s (%d pages of %d bytes), snapshot %s is %s (%d pages of %d bytes)",
			db.name, db.pos, db.commit, db.pageSize, path, ltx.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: trailer.PostApplyChecksum}, hdr.Commit, hdr.PageSize)
	}
	headPath, err := db.listHead()
	if err != nil {
		return db.pos, err
	}
	head, _, err := readLTXFile(headPath)
	if err != nil {
		return db.pos, fmt.Errorf("database %s: read head: %w", db.name, err)
	}
	if err := db.syncUnsynced(); err != nil {
		return db.pos, err
	}
	// Write the new file under the pending name first: a crash leaves the
	// old chain, which the next connection to the primary resyncs again.
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return db.pos, err
	}
	tmp := db.pendingPath()
	if err := reencodeSnapshot(src, tmp, head); err != nil {
		os.Remove(tmp)
		return db.pos, fmt.Errorf("database %s: %w", db.name, err)
	}
	ents, err := os.ReadDir(db.ltxDir)
	if err != nil {
		return db.pos, err
	}
	for _, e := range ents {
		if _, _, err := ltx.ParseFilename(e.Name()); err == nil {
			if err := os.Remove(filepath.Join(db.ltxDir, e.Name())); err != nil {
				return db.pos, err
			}
		}
	}
	final := filepath.Join(db.ltxDir, ltx.FormatFilename(hdr.MinTXID, hdr.MaxTXID))
	if err := os.Rename(tmp, final); err != nil {
		return db.pos, err
	}
	if err := syncDir(db.ltxDir); err != nil {
		return db.pos, err
	}
	db.pos = ltx.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: trailer.PostApplyChecksum}
	db.hasFile = true
	db.writeHint()
	db.log.Info("chain restarted from the primary's snapshot", "txid", hdr.MaxTXID)
	return db.pos, nil
}

// reencodeSnapshot copies the snapshot read from r to path, with the WAL
// fields of head, and syncs it.
func reencodeSnapshot(r io.Reader, path string, head ltx.Header) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := ltx.NewDecoder(r)
	if err := dec.DecodeHeader(); err != nil {
		return err
	}
	hdr := dec.Header()
	hdr.WALOffset, hdr.WALSize, hdr.WALSalt1, hdr.WALSalt2 = head.WALOffset, head.WALSize, head.WALSalt1, head.WALSalt2
	enc := ltx.NewEncoder(f)
	if err := enc.EncodeHeader(hdr); err != nil {
		return err
	}
	buf := make([]byte, hdr.PageSize)
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, buf); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if err := enc.EncodePage(ph, buf); err != nil {
			return err
		}
	}
	if err := dec.Close(); err != nil {
		return err
	}
	enc.SetPostApplyChecksum(dec.Trailer().PostApplyChecksum)
	if err := enc.Close(); err != nil {
		return err
	}
	return f.Sync()
}

// ErrSnapshotBusy is returned by WriteSnapshot while a rollback-journal
// transaction or a WAL restart is in progress; the caller retries shortly.
var ErrSnapshotBusy = errors.New("database is between states; retry the snapshot")

// WriteSnapshot writes the database as of the head of its chain to w, as
// an LTX snapshot spanning TXIDs 1 to the head, and returns the head. It
// checks the image against the head's checksum before finishing the file.
// It holds the database's lock while it reads every page: commits that
// need the lock wait.
func (db *DB) WriteSnapshot(w io.Writer) (ltx.Pos, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.failed != nil {
		return db.pos, db.failed
	}
	if db.journalHot || db.txn != nil {
		return db.pos, ErrSnapshotBusy
	}
	useWAL := false
	if db.walExists {
		if err := db.captureWAL(capturePoll); err != nil {
			return db.pos, err
		}
		if db.wal.valid && db.wal.f != nil {
			var hb [walHeaderSize]byte
			if _, err := db.wal.f.ReadAt(hb[:], 0); err == nil {
				h, err := parseWALHeader(hb[:])
				if err != nil || h.salt1 != db.wal.salt1 || h.salt2 != db.wal.salt2 {
					return db.pos, ErrSnapshotBusy
				}
				useWAL = true
			}
		}
	}
	if db.pos.TXID == 0 || db.pageSize == 0 {
		return db.pos, fmt.Errorf("database %s has no transactions yet", db.name)
	}
	enc := ltx.NewEncoder(w)
	hdr := ltx.Header{
		Version: ltx.Version, PageSize: db.pageSize, Commit: db.commit,
		MinTXID: 1, MaxTXID: db.pos.TXID, Timestamp: time.Now().UnixMilli(),
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		return db.pos, err
	}
	buf := make([]byte, db.pageSize)
	lock := ltx.LockPgno(db.pageSize)
	chk := ltx.ChecksumFlag
	for pgno := uint32(1); pgno <= db.commit; pgno++ {
		if pgno == lock {
			continue
		}
		if off, ok := db.wal.index[pgno]; ok && useWAL {
			if _, err := db.wal.f.ReadAt(buf, off+walFrameHeaderSize); err != nil {
				return db.pos, fmt.Errorf("read page %d from the WAL: %w", pgno, err)
			}
		} else if err := db.readPage(pgno, db.pageSize, buf); err != nil {
			return db.pos, fmt.Errorf("read page %d: %w", pgno, err)
		}
		chk ^= ltx.ChecksumPageWith(db.hash, pgno, buf)
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, buf); err != nil {
			return db.pos, err
		}
	}
	if got := ltx.ChecksumFlag | chk; got != db.pos.PostApplyChecksum {
		return db.pos, fmt.Errorf("database %s: snapshot image has checksum %s, the chain's head %s says %s", db.name, got, db.pos.TXID, db.pos.PostApplyChecksum)
	}
	enc.SetPostApplyChecksum(db.pos.PostApplyChecksum)
	if err := enc.Close(); err != nil {
		return db.pos, err
	}
	return db.pos, nil
}
