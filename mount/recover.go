package mount

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/pagefs/pagefs/ltx"
)

// open loads the head of the chain and settles whatever a crash left:
// a pending LTX file, a hot journal, WAL frames not yet captured, a
// database that has no chain yet.
func (db *DB) open() error {
	head, err := db.loadHead()
	if err != nil {
		return fmt.Errorf("database %s: %w", db.name, err)
	}
	hot := journalIsHot(db.path + "-journal")
	if err := db.settlePending(hot, &head); err != nil {
		return fmt.Errorf("database %s: %w", db.name, err)
	}
	if hot {
		if err := rollbackJournal(db.path); err != nil {
			return fmt.Errorf("database %s: roll back hot journal: %w", db.name, err)
		}
		db.log.Info("rolled back the hot journal left by a crash")
	}
	if fi, err := os.Stat(db.path); err == nil && fi.Size() > 0 && db.pos.TXID == 0 {
		// A database that pagefs has never captured: its base snapshot.
		db.txn = &rollbackTxn{import_: true, synced: true}
		if err := db.commitRollback(nil); err != nil {
			return fmt.Errorf("database %s: snapshot: %w", db.name, err)
		}
		head = ltx.Header{}
	}
	if _, err := os.Stat(db.walPath()); err == nil {
		db.walExists = true
		if err := db.rebuildWALIndex(head); err != nil {
			return fmt.Errorf("database %s: resume WAL capture: %w", db.name, err)
		}
		if err := db.gateMode(captureRecover); err != nil {
			return fmt.Errorf("database %s: capture WAL: %w", db.name, err)
		}
	}
	return nil
}

// loadHead finds the newest LTX file of the chain without listing it: from
// the head hint, it probes forward for the files written since. It verifies
// the head file completely; a torn head (power loss before it was synced) is
// removed and the previous file becomes the head. The head may span several
// TXIDs (a restored snapshot); files pagefs writes span one.
func (db *DB) loadHead() (ltx.Header, error) {
	head := ""
	if txid := db.readHint(); txid > 0 && fileExists(db.ltxPath(txid)) {
		head = db.ltxPath(txid)
	}
	for {
		if head == "" {
			var err error
			if head, err = db.listHead(); err != nil || head == "" {
				return ltx.Header{}, err
			}
		}
		_, max, _ := ltx.ParseFilename(filepath.Base(head))
		for fileExists(db.ltxPath(max + 1)) {
			max++
			head = db.ltxPath(max)
		}
		hdr, trailer, err := readLTXFile(head)
		if err == nil {
			db.pos = ltx.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: trailer.PostApplyChecksum}
			db.pageSize, db.commit, db.hasFile = hdr.PageSize, hdr.Commit, true
			return hdr, nil
		}
		db.log.Error("head LTX file is damaged; removing it and using the one before", "file", head, "err", err)
		if err := os.Remove(head); err != nil {
			return ltx.Header{}, err
		}
		head = ""
	}
}

func (db *DB) ltxPath(txid ltx.TXID) string {
	return filepath.Join(db.ltxDir, ltx.FormatFilename(txid, txid))
}

// listHead lists the level-0 folder for its newest file. Only used when the
// hint is missing or stale.
func (db *DB) listHead() (string, error) {
	ents, err := os.ReadDir(db.ltxDir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	var max ltx.TXID
	head := ""
	for _, e := range ents {
		if _, hi, err := ltx.ParseFilename(e.Name()); err == nil && hi > max {
			max, head = hi, filepath.Join(db.ltxDir, e.Name())
		}
	}
	return head, nil
}

// readLTXFile decodes and verifies an LTX file and returns its header and
// trailer.
func readLTXFile(p string) (ltx.Header, ltx.Trailer, error) {
	f, err := os.Open(p)
	if err != nil {
		return ltx.Header{}, ltx.Trailer{}, err
	}
	defer f.Close()
	dec := ltx.NewDecoder(f)
	if err := dec.Verify(); err != nil {
		return ltx.Header{}, ltx.Trailer{}, err
	}
	return dec.Header(), dec.Trailer(), nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// settlePending finishes or discards an LTX file a crash left under the
// pending name. If the journal is still hot, SQLite never finished the
// commit and will roll it back: the file goes. Otherwise the commit
// happened and the file joins the chain, provided it continues it.
func (db *DB) settlePending(hot bool, head *ltx.Header) error {
	p := db.pendingPath()
	if !fileExists(p) {
		return nil
	}
	if hot {
		db.log.Info("discarding the LTX file of a transaction that did not commit before the crash")
		return os.Remove(p)
	}
	hdr, trailer, err := readLTXFile(p)
	if err != nil || hdr.MinTXID != db.pos.TXID+1 || (hdr.MinTXID > 1 && hdr.PreApplyChecksum != db.pos.PostApplyChecksum) {
		db.log.Warn("discarding a pending LTX file that does not continue the chain", "file", p, "err", err)
		return os.Remove(p)
	}
	if err := os.MkdirAll(db.ltxDir, 0o755); err != nil {
		return err
	}
	if err := os.Rename(p, db.ltxPath(hdr.MaxTXID)); err != nil {
		return err
	}
	db.pos = ltx.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: trailer.PostApplyChecksum}
	db.pageSize, db.commit, db.hasFile = hdr.PageSize, hdr.Commit, true
	*head = hdr
	db.log.Info("completed the LTX file of a transaction that committed just before the crash", "txid", hdr.MaxTXID)
	return nil
}

// journalIsHot reports whether the rollback journal at p exists and opens
// with the journal magic, that is, whether SQLite would roll it back.
func journalIsHot(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [28]byte
	n, _ := f.ReadAt(b[:], 0)
	_, ok := parseJournalHeader(b[:n])
	return ok
}

// rollbackJournal plays a hot rollback journal back into the database file,
// as SQLite would on its next open, and deletes the journal. It runs before
// the mount serves the database, so no SQLite connection can be using it.
func rollbackJournal(dbPath string) error {
	jp := dbPath + "-journal"
	j, err := os.Open(jp)
	if err != nil {
		return err
	}
	defer j.Close()
	fi, err := j.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	d, err := os.OpenFile(dbPath, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer d.Close()

	var hb [28]byte
	if _, err := j.ReadAt(hb[:], 0); err != nil {
		return err
	}
	first, ok := parseJournalHeader(hb[:])
	if !ok {
		return nil
	}
	ps := int64(first.pageSize)
	rec := make([]byte, 4+ps+4)
	off := int64(0)
	for off+28 <= size {
		if _, err := j.ReadAt(hb[:], off); err != nil {
			break
		}
		h, ok := parseJournalHeader(hb[:])
		if !ok || h.pageSize != first.pageSize {
			break
		}
		nRec := int64(h.nRec)
		recOff := off + int64(h.sectorSize)
		if h.nRec == 0xffffffff {
			nRec = (size - recOff) / int64(len(rec))
		}
		done := false
		for i := int64(0); i < nRec; i++ {
			if _, err := j.ReadAt(rec, recOff); err != nil {
				if err == io.EOF {
					done = true
					break
				}
				return err
			}
			pgno := beUint32(rec[0:4])
			page := rec[4 : 4+ps]
			if pgno == 0 || beUint32(rec[4+ps:]) != journalRecordChecksum(h.nonce, page) {
				done = true
				break
			}
			if _, err := d.WriteAt(page, int64(pgno-1)*ps); err != nil {
				return err
			}
			recOff += int64(len(rec))
		}
		if done || nRec == 0 {
			break
		}
		sector := int64(h.sectorSize)
		off = (recOff + sector - 1) / sector * sector
	}
	if err := d.Truncate(int64(first.dbSize) * ps); err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		return err
	}
	return os.Remove(jp)
}

func beUint32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// maintain runs off the commit path about once a second: it notes the
// head for the next startup and applies local retention.
func (db *DB) maintain() {
	db.mu.Lock()
	if db.hasFile && db.pos.TXID != db.hintTXID {
		db.writeHint()
	}
	db.mu.Unlock()
	db.applyRetention()
}

// applyRetention deletes level-0 files older than the retention period,
// keeping the newest RetentionCount files and everything a backup lacks.
func (db *DB) applyRetention() {
	cfg := db.store.cfg
	if cfg.Retention <= 0 {
		return
	}
	ents, err := os.ReadDir(db.ltxDir)
	if err != nil {
		return
	}
	type file struct {
		name string
		max  ltx.TXID
	}
	var files []file
	for _, e := range ents {
		if _, hi, err := ltx.ParseFilename(e.Name()); err == nil {
			files = append(files, file{e.Name(), hi})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].max < files[j].max })
	floor := ltx.TXID(^uint64(0))
	if cfg.RetentionFloor != nil {
		floor = ltx.TXID(cfg.RetentionFloor(db.name))
	}
	cutoff := time.Now().Add(-cfg.Retention)
	head := db.Pos().TXID
	for i, f := range files {
		if len(files)-i <= cfg.RetentionCount || f.max > floor || f.max >= head {
			break
		}
		p := filepath.Join(db.ltxDir, f.name)
		fi, err := os.Stat(p)
		if err != nil || fi.ModTime().After(cutoff) {
			break
		}
		_ = os.Remove(p)
	}
}
