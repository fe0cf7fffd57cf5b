package mount

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/pagefs/pagefs/ltx"
)

// captureMode says how far a capture may trust the WAL.
//
// A commit frame on disk is not yet a commit: SQLite's connections consider
// a transaction committed once the wal-index header in the -shm says so. A
// writer killed between writing its commit frame and updating the header
// leaves a valid-looking transaction that the next writer overwrites. Only
// when no connection has the database open does the disk decide: SQLite's
// next open rebuilds the wal-index from the WAL's checksum chain.
type captureMode int

const (
	// capturePoll captures what the live wal-index says is committed, and
	// nothing if it cannot tell.
	capturePoll captureMode = iota
	// captureGate runs before a checkpoint, truncation or deletion: it
	// trusts the live wal-index, or the disk when there is none (EXCLUSIVE
	// locking keeps the wal-index in the process's memory).
	captureGate
	// captureRecover runs when no connection is open: the disk decides.
	captureRecover
)

// walCursor is how far capture has read the current WAL generation.
type walCursor struct {
	f, shm *os.File // pagefs's read handles on the backing -wal and -shm

	valid        bool // the fields below describe the WAL's current generation
	salt1, salt2 uint32
	bigEndian    bool
	pageSize     uint32
	offset       int64            // first frame not yet captured
	s1, s2       uint32           // checksum chain at offset
	index        map[uint32]int64 // page -> offset of its newest captured frame

	shmHdr  [shmHeaderSize]byte // -shm header at the last poll
	walSize int64               // -wal size at the last poll, when there is no -shm

	// scannedShm is the wal-index header that bounded the last scan, which
	// found everything it describes captured: while it is unchanged, a gate
	// has nothing to do. Checkpoints gate every page they write.
	scannedShm [shmHeaderSize]byte
	limitShm   [shmHeaderSize]byte // the header walLimit last used
	limit      int64               // and the end of the WAL it gave
	buf        []byte              // frames read by a scan
}

func (c *walCursor) close() {
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
	if c.shm != nil {
		c.shm.Close()
		c.shm = nil
	}
}

// reset forgets the generation: the next capture starts at the WAL's first
// frame. Only valid once every frame of the generation has been captured
// and backfilled, which SQLite guarantees before it restarts, truncates or
// deletes a WAL, all of which pagefs gates.
func (c *walCursor) reset() {
	c.valid = false
	c.index = nil
	c.scannedShm = [shmHeaderSize]byte{}
}

func (db *DB) walPath() string { return db.path + "-wal" }
func (db *DB) shmPath() string { return db.path + "-shm" }

// walOpened notes that SQLite opened the WAL.
func (db *DB) walOpened() {
	db.mu.Lock()
	db.walExists = true
	db.mu.Unlock()
}

// truncateWAL captures the whole WAL before SQLite truncates it.
func (db *DB) truncateWAL(f *os.File, size int64) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.gate(); err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		return err
	}
	db.wal.reset()
	return nil
}

// unlinkWAL captures the whole WAL before SQLite deletes it.
func (db *DB) unlinkWAL(p string) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.gate(); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return err
	}
	db.wal.close()
	db.wal.reset()
	db.walExists = false
	return nil
}

// gate brings capture to the end of the valid WAL and makes every LTX file
// durable. It runs before anything that could destroy WAL frames.
func (db *DB) gate() error { return db.gateMode(captureGate) }

// gateMode is gate with the given trust in the WAL.
func (db *DB) gateMode(mode captureMode) error {
	if db.failed != nil {
		return db.failed
	}
	if err := db.captureWAL(mode); err != nil {
		db.fail(err)
		return db.failed
	}
	return db.syncUnsynced()
}

// poll captures new commits if the -shm header moved since the last poll
// (or, for a database without a -shm, the WAL grew). It reports whether it
// found any.
func (db *DB) poll() (bool, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if !db.walExists || db.failed != nil {
		return false, nil
	}
	mode := capturePoll
	if db.openSHM() {
		var hdr [shmHeaderSize]byte
		if n, _ := db.wal.shm.ReadAt(hdr[:], 0); n < shmHeaderSize || hdr == db.wal.shmHdr {
			return false, nil
		}
		db.wal.shmHdr = hdr
	} else {
		// No -shm: EXCLUSIVE locking, where the one connection's own
		// memory holds the wal-index and the disk decides after a crash.
		fi, err := os.Stat(db.walPath())
		if err != nil || fi.Size() == db.wal.walSize {
			return false, nil
		}
		db.wal.walSize = fi.Size()
		mode = captureRecover
	}
	before := db.pos.TXID
	if err := db.captureWAL(mode); err != nil {
		return true, err
	}
	return db.pos.TXID != before, nil
}

// openSHM opens pagefs's read handle on the -shm if it is not open yet,
// and reports whether there is one.
func (db *DB) openSHM() bool {
	if db.wal.shm == nil {
		f, err := os.Open(db.shmPath())
		if err != nil {
			return false
		}
		db.wal.shm = f
	}
	return true
}

// walLimit returns the end of the frames SQLite considers committed in the
// WAL whose header is hdr, or -1 if that cannot be told now.
func (db *DB) walLimit(mode captureMode, hdr walHeader, hb []byte) int64 {
	const noLimit = int64(1) << 62
	if mode == captureRecover {
		return noLimit
	}
	if !db.openSHM() {
		return noLimit // no wal-index file: EXCLUSIVE locking
	}
	frameSize := int64(walFrameHeaderSize) + int64(hdr.pageSize)
	for try := 0; try < 100; try++ {
		var b [shmHeaderSize]byte
		if n, _ := db.wal.shm.ReadAt(b[:], 0); n < shmHeaderSize {
			break
		}
		sh, ok := parseSHMHeader(b[:])
		if !ok {
			continue // a writer is updating it
		}
		if string(sh.salt[:]) != string(hb[16:24]) {
			break
		}
		db.wal.limitShm = b
		db.wal.limit = walHeaderSize + int64(sh.mxFrame)*frameSize
		return db.wal.limit
	}
	// The wal-index does not describe this WAL: during a restart (a poll
	// waits for it) or because no connection uses it (EXCLUSIVE locking, a
	// stale -shm), where the disk decides.
	if mode == capturePoll {
		return -1
	}
	return noLimit
}

// walScan is what one pass over the WAL found: the committed frames after
// the cursor.
type walScan struct {
	hdr     walHeader
	start   int64            // offset of the first frame
	end     int64            // offset after the last commit frame
	s1, s2  uint32           // checksum chain at end
	commit  uint32           // database size after the last commit
	pages   map[uint32]int64 // page -> offset of its newest frame in [start, end)
	commits int              // SQLite transactions in the range
	limit   int64            // end of the frames the wal-index says are committed
}

// captureWAL reads every committed transaction after the cursor and turns
// them into one LTX file (one TXID, as Litestream does under load).
func (db *DB) captureWAL(mode captureMode) error {
	if db.wal.f == nil {
		f, err := os.Open(db.walPath())
		if errors.Is(err, os.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		db.wal.f = f
	}
	if mode != captureRecover && db.wal.valid && db.wal.shm != nil && db.wal.scannedShm != ([shmHeaderSize]byte{}) {
		var b [shmHeaderSize]byte
		if n, _ := db.wal.shm.ReadAt(b[:], 0); n == shmHeaderSize && b == db.wal.scannedShm {
			return nil
		}
	}
	db.wal.limitShm = [shmHeaderSize]byte{}
	scan, err := db.scanWAL(mode)
	if err != nil {
		return err
	}
	if scan == nil {
		db.wal.scannedShm = [shmHeaderSize]byte{}
		if db.wal.valid && db.wal.limitShm != ([shmHeaderSize]byte{}) && db.wal.limit == db.wal.offset {
			db.wal.scannedShm = db.wal.limitShm
		}
		return nil
	}
	w, err := db.buildWALLTX(scan)
	if err != nil {
		return fmt.Errorf("capture WAL frames %d-%d: %w", scan.start, scan.end, err)
	}
	c := &db.wal
	if w != nil {
		if err := db.publish(w, true); err != nil {
			return err
		}
	} else {
		db.commit = scan.commit
	}
	c.offset, c.s1, c.s2 = scan.end, scan.s1, scan.s2
	for pgno, off := range scan.pages {
		c.index[pgno] = off
	}
	if scan.end == scan.limit {
		c.scannedShm = c.limitShm // everything the wal-index describes is captured
	} else {
		c.scannedShm = [shmHeaderSize]byte{}
	}
	db.log.Debug("captured WAL", "frames", (scan.end-scan.start)/int64(walFrameHeaderSize+int(scan.hdr.pageSize)), "transactions", scan.commits)
	return nil
}

// scanWAL validates frames after the cursor with the WAL's checksum chain
// and returns the committed ones, or nil if there are none.
func (db *DB) scanWAL(mode captureMode) (*walScan, error) {
	c := &db.wal
	var hb [walHeaderSize]byte
	if n, err := c.f.ReadAt(hb[:], 0); n < walHeaderSize {
		if err != nil && err != io.EOF {
			return nil, err
		}
		return nil, nil // empty WAL
	}
	hdr, err := parseWALHeader(hb[:])
	if err != nil {
		return nil, nil // SQLite treats an invalid header as an empty WAL
	}
	limit := db.walLimit(mode, hdr, hb[:])
	if limit < 0 {
		return nil, nil
	}
	if !c.valid || hdr.salt1 != c.salt1 || hdr.salt2 != c.salt2 {
		c.valid = true
		c.salt1, c.salt2, c.bigEndian, c.pageSize = hdr.salt1, hdr.salt2, hdr.bigEndianCksum, hdr.pageSize
		c.offset, c.s1, c.s2 = walHeaderSize, hdr.cksum1, hdr.cksum2
		c.index = make(map[uint32]int64)
	}
	frameSize := int64(walFrameHeaderSize) + int64(hdr.pageSize)
	if limit <= c.offset {
		return nil, nil
	}
	scan := &walScan{hdr: hdr, start: c.offset, end: c.offset, s1: c.s1, s2: c.s2, limit: limit, pages: make(map[uint32]int64)}
	pending := make(map[uint32]int64) // frames of the transaction being read
	s1, s2 := c.s1, c.s2
	const batch = 64
	if int64(len(c.buf)) != batch*frameSize {
		c.buf = make([]byte, batch*frameSize)
	}
	buf := c.buf
	off := c.offset
	for off < limit {
		n, rerr := c.f.ReadAt(buf[:min(int64(len(buf)), (limit-off)/frameSize*frameSize)], off)
		frames := int64(n) / frameSize
		for i := int64(0); i < frames; i++ {
			fb := buf[i*frameSize : (i+1)*frameSize]
			fh := parseWALFrameHeader(fb)
			if fh.salt1 != hdr.salt1 || fh.salt2 != hdr.salt2 || fh.pgno == 0 {
				return scan.result(), nil
			}
			s1, s2 = walChecksum(hdr.bigEndianCksum, s1, s2, fb[:8])
			s1, s2 = walChecksum(hdr.bigEndianCksum, s1, s2, fb[walFrameHeaderSize:])
			if s1 != fh.cksum1 || s2 != fh.cksum2 {
				return scan.result(), nil
			}
			pending[fh.pgno] = off + i*frameSize
			if fh.commit != 0 {
				for pgno, o := range pending {
					scan.pages[pgno] = o
				}
				clear(pending)
				scan.end = off + (i+1)*frameSize
				scan.s1, scan.s2 = s1, s2
				scan.commit = fh.commit
				scan.commits++
			}
		}
		if frames < batch {
			if rerr != nil && rerr != io.EOF {
				return nil, rerr
			}
			return scan.result(), nil
		}
		off += frames * frameSize
	}
	return scan.result(), nil
}

func (s *walScan) result() *walScan {
	if s.commits == 0 {
		return nil
	}
	return s
}

// buildWALLTX encodes the pages of scan, reading old versions of changed
// pages from earlier frames or the database file for the rolling checksum.
func (db *DB) buildWALLTX(scan *walScan) (*ltxWriter, error) {
	ps := scan.hdr.pageSize
	frameData := func(off int64, buf []byte) error {
		_, err := db.wal.f.ReadAt(buf[:ps], off+walFrameHeaderSize)
		return err
	}
	// The version of each page before the scan: its newest captured frame,
	// else the database file.
	before := func(pgno uint32, buf []byte) error {
		if off, ok := db.wal.index[pgno]; ok {
			return frameData(off, buf)
		}
		return db.readPage(pgno, ps, buf)
	}
	after := func(pgno uint32, buf []byte) error {
		if off, ok := scan.pages[pgno]; ok {
			return frameData(off, buf)
		}
		return before(pgno, buf)
	}
	hdr := ltx.Header{
		WALOffset: scan.start, WALSize: scan.end - scan.start,
		WALSalt1: scan.hdr.salt1, WALSalt2: scan.hdr.salt2,
	}
	if db.pos.TXID == 0 || db.full || ps != db.pageSize {
		hdr.PageSize, hdr.Commit = ps, scan.commit
		return db.buildImage(hdr, after)
	}
	pgnos := make([]uint32, 0, len(scan.pages))
	for pgno := range scan.pages {
		pgnos = append(pgnos, pgno)
	}
	for pgno := scan.commit + 1; pgno <= db.commit; pgno++ {
		if _, ok := scan.pages[pgno]; !ok {
			pgnos = append(pgnos, pgno) // removed by a shrinking commit
		}
	}
	sort.Slice(pgnos, func(i, j int) bool { return pgnos[i] < pgnos[j] })
	old := make(map[uint32]ltx.Checksum, len(pgnos))
	buf := make([]byte, ps)
	lock := ltx.LockPgno(ps)
	for _, pgno := range pgnos {
		if pgno > db.commit || pgno == lock {
			continue
		}
		if err := before(pgno, buf); err != nil {
			return nil, err
		}
		old[pgno] = ltx.ChecksumPageWith(db.hash, pgno, buf)
	}
	return db.encodeDelta(ps, scan.commit, pgnos, old, after, hdr)
}

// rebuildWALIndex restores the cursor after a restart: the WAL generation
// and position the head LTX file recorded, and which page each captured
// frame holds. It reads frame headers only.
func (db *DB) rebuildWALIndex(h ltx.Header) error {
	c := &db.wal
	f, err := os.Open(db.walPath())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	c.f = f
	if h.WALSalt1 == 0 && h.WALSalt2 == 0 {
		return nil // the head came from a rollback transaction: the WAL is all new
	}
	var hb [walHeaderSize]byte
	if n, _ := f.ReadAt(hb[:], 0); n < walHeaderSize {
		return nil
	}
	hdr, err := parseWALHeader(hb[:])
	if err != nil || hdr.salt1 != h.WALSalt1 || hdr.salt2 != h.WALSalt2 {
		return nil // restarted since: every frame of the old generation was captured
	}
	frameSize := int64(walFrameHeaderSize) + int64(hdr.pageSize)
	end := h.WALOffset + h.WALSize
	if end < walHeaderSize+frameSize || (end-walHeaderSize)%frameSize != 0 {
		return fmt.Errorf("head LTX file records WAL end %d, not a frame boundary", end)
	}
	c.valid = true
	c.salt1, c.salt2, c.bigEndian, c.pageSize = hdr.salt1, hdr.salt2, hdr.bigEndianCksum, hdr.pageSize
	c.index = make(map[uint32]int64)
	var fh [walFrameHeaderSize]byte
	for off := int64(walHeaderSize); off < end; off += frameSize {
		if _, err := f.ReadAt(fh[:], off); err != nil {
			return fmt.Errorf("read WAL frame at %d: %w", off, err)
		}
		c.index[binary.BigEndian.Uint32(fh[0:4])] = off
	}
	last := parseWALFrameHeader(fh[:])
	if last.salt1 != hdr.salt1 || last.salt2 != hdr.salt2 || last.commit == 0 {
		return fmt.Errorf("WAL frame at %d does not end a transaction of the captured generation", end-frameSize)
	}
	c.offset, c.s1, c.s2 = end, last.cksum1, last.cksum2
	return nil
}
