package mount

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/pagefs/pagefs/ltx"
)

// ltxWriter streams one LTX file to the database's pending path. Pages go
// straight to disk, so a transaction of any size costs memory only for its
// page index.
type ltxWriter struct {
	db    *DB
	path  string
	f     *os.File
	bw    *bufio.Writer
	enc   *ltx.Encoder
	hdr   ltx.Header
	pages int
}

func (db *DB) pendingPath() string { return filepath.Join(db.dir, "pending.ltx") }

// newLTXWriter starts the next file of the chain. hdr's TXIDs, pre-apply
// checksum, version and timestamp are filled in here.
func (db *DB) newLTXWriter(hdr ltx.Header) (*ltxWriter, error) {
	if !db.ltxDirMade {
		if err := os.MkdirAll(db.ltxDir, 0o755); err != nil {
			return nil, err
		}
		db.ltxDirMade = true // a stat per commit otherwise
	}
	hdr.Version = ltx.Version
	hdr.MinTXID = db.pos.TXID + 1
	hdr.MaxTXID = hdr.MinTXID
	hdr.Timestamp = time.Now().UnixMilli()
	if hdr.MinTXID > 1 {
		hdr.PreApplyChecksum = db.pos.PostApplyChecksum
	}
	p := db.pendingPath()
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	w := &ltxWriter{db: db, path: p, f: f, bw: bufio.NewWriterSize(f, 256<<10), hdr: hdr}
	w.enc = ltx.NewEncoder(w.bw)
	if err := w.enc.EncodeHeader(hdr); err != nil {
		w.abort()
		return nil, fmt.Errorf("encode LTX header: %w", err)
	}
	return w, nil
}

func (w *ltxWriter) page(pgno uint32, data []byte) error {
	w.pages++
	return w.enc.EncodePage(ltx.PageHeader{Pgno: pgno}, data)
}

// finish writes the index and trailer with the post-apply checksum.
func (w *ltxWriter) finish(post ltx.Checksum) error {
	w.enc.SetPostApplyChecksum(post)
	if err := w.enc.Close(); err != nil {
		return fmt.Errorf("encode LTX: %w", err)
	}
	return w.bw.Flush()
}

func (w *ltxWriter) sync() error { return w.f.Sync() }

// abort drops the pending file.
func (w *ltxWriter) abort() {
	w.f.Close()
	os.Remove(w.path)
}

// publish renames a finished pending file into the chain and advances the
// head. An unsynced file is remembered so that the next gate makes it
// durable.
func (db *DB) publish(w *ltxWriter, unsynced bool) error {
	if err := w.f.Close(); err != nil {
		os.Remove(w.path)
		return err
	}
	hdr := w.hdr
	final := filepath.Join(db.ltxDir, ltx.FormatFilename(hdr.MinTXID, hdr.MaxTXID))
	if err := os.Rename(w.path, final); err != nil {
		db.fail(fmt.Errorf("publish %s: %w", final, err))
		return db.failed
	}
	post := w.enc.Trailer().PostApplyChecksum
	db.pos = ltx.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: post}
	db.pageSize, db.commit = hdr.PageSize, hdr.Commit
	db.hasFile, db.full = true, false
	db.stats.LTXFiles++
	db.stats.LTXBytes += uint64(w.enc.N())
	db.stats.Pages += uint64(w.pages)
	db.stats.LastCommit = time.Now()
	if unsynced {
		db.unsynced = append(db.unsynced, final)
	}
	db.log.Debug("commit", "txid", hdr.MaxTXID, "pages", w.pages, "commit", hdr.Commit, "checksum", post)
	if db.store.cfg.OnCommit != nil {
		db.store.cfg.OnCommit(Commit{
			DB: db.name, Path: final, MinTXID: uint64(hdr.MinTXID), MaxTXID: uint64(hdr.MaxTXID),
			Pages: w.pages, Commit: hdr.Commit, Checksum: uint64(post),
		})
	}
	return nil
}

// syncUnsynced makes every LTX file published without fsync durable, and
// the chain's folder with them.
func (db *DB) syncUnsynced() error {
	if len(db.unsynced) == 0 {
		return nil
	}
	for _, p := range db.unsynced {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	db.unsynced = db.unsynced[:0]
	return syncDir(db.ltxDir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// buildRollbackLTX encodes the transaction txn from the backing database
// file to the pending path. It returns nil if the transaction changed
// nothing.
func (db *DB) buildRollbackLTX(txn *rollbackTxn) (*ltxWriter, error) {
	f, err := db.readFile()
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() == 0 {
		return nil, nil
	}
	var hdr [dbHeaderSize]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("read database header: %w", err)
	}
	pageSize := dbHeaderPageSize(hdr[:])
	if !isDatabaseHeader(hdr[:]) || pageSize == 0 {
		return nil, fmt.Errorf("database file has no valid SQLite header")
	}
	commit := dbHeaderCommit(hdr[:], fi.Size(), pageSize)
	if txn.import_ || txn.old == nil || db.pos.TXID == 0 || db.full || pageSize != db.pageSize || txn.pageSize != pageSize {
		if txn.old == nil && !txn.import_ && db.pos.TXID > 0 && !db.full && pageSize == db.pageSize && commit == db.commit {
			return nil, nil // no page of the database was written
		}
		return db.buildImage(ltx.Header{PageSize: pageSize, Commit: commit}, pageSourceFile(db))
	}
	return db.buildDelta(txn, pageSize, commit)
}

// pageSource reads version pgno of a page into buf.
type pageSource func(pgno uint32, buf []byte) error

func pageSourceFile(db *DB) pageSource {
	return func(pgno uint32, buf []byte) error { return db.readPage(pgno, uint32(len(buf)), buf) }
}

// buildImage encodes every page of the database as the next transaction,
// computing the rolling checksum from scratch.
func (db *DB) buildImage(hdr ltx.Header, src pageSource) (*ltxWriter, error) {
	pageSize, commit := hdr.PageSize, hdr.Commit
	w, err := db.newLTXWriter(hdr)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, pageSize)
	lock := ltx.LockPgno(pageSize)
	chk := ltx.ChecksumFlag
	for pgno := uint32(1); pgno <= commit; pgno++ {
		if pgno == lock {
			continue
		}
		if err := src(pgno, buf); err != nil {
			w.abort()
			return nil, err
		}
		chk ^= ltx.ChecksumPageWith(db.hash, pgno, buf)
		if err := w.page(pgno, buf); err != nil {
			w.abort()
			return nil, err
		}
	}
	if err := w.finish(ltx.ChecksumFlag | chk); err != nil {
		w.abort()
		return nil, err
	}
	return w, nil
}

// buildDelta encodes the pages a rollback transaction wrote, updating the
// rolling checksum from their old and new checksums.
func (db *DB) buildDelta(txn *rollbackTxn, pageSize, commit uint32) (*ltxWriter, error) {
	pgnos := make([]uint32, 0, len(txn.old))
	for pgno := range txn.old {
		pgnos = append(pgnos, pgno)
	}
	for pgno := db.commit + 1; pgno <= commit; pgno++ {
		if _, ok := txn.old[pgno]; !ok {
			pgnos = append(pgnos, pgno) // grown without a write we saw (a hole)
			txn.old[pgno] = 0
		}
	}
	// Pages past the new end that the transaction never wrote leave the
	// database too; the file still holds their old content, because SQLite
	// trims it only after the commit.
	buf := make([]byte, pageSize)
	for pgno := commit + 1; pgno <= db.commit; pgno++ {
		if _, ok := txn.old[pgno]; ok || pgno == ltx.LockPgno(pageSize) {
			continue
		}
		if err := db.readPage(pgno, pageSize, buf); err != nil {
			return nil, err
		}
		txn.old[pgno] = ltx.ChecksumPageWith(db.hash, pgno, buf)
		pgnos = append(pgnos, pgno)
	}
	sort.Slice(pgnos, func(i, j int) bool { return pgnos[i] < pgnos[j] })
	return db.encodeDelta(pageSize, commit, pgnos, txn.old, pageSourceFile(db), ltx.Header{})
}

// encodeDelta writes the pages pgnos (ascending) of the new version, read
// from src, and updates the rolling checksum: old[pgno] is the checksum the
// page had before (0 if it did not exist). Pages above commit were removed.
// It returns nil if nothing changed.
func (db *DB) encodeDelta(pageSize, commit uint32, pgnos []uint32, old map[uint32]ltx.Checksum, src pageSource, hdr ltx.Header) (*ltxWriter, error) {
	hdr.PageSize, hdr.Commit = pageSize, commit
	w, err := db.newLTXWriter(hdr)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, pageSize)
	lock := ltx.LockPgno(pageSize)
	chk := db.pos.PostApplyChecksum
	changed := commit != db.commit
	for _, pgno := range pgnos {
		if pgno == lock {
			continue
		}
		prev := old[pgno]
		if pgno > commit {
			if prev != 0 {
				chk ^= prev
				changed = true
			}
			continue
		}
		if err := src(pgno, buf); err != nil {
			w.abort()
			return nil, err
		}
		cur := ltx.ChecksumPageWith(db.hash, pgno, buf)
		if cur != prev {
			changed = true
			chk ^= prev ^ cur
		}
		if err := w.page(pgno, buf); err != nil {
			w.abort()
			return nil, err
		}
	}
	if !changed {
		w.abort()
		return nil, nil
	}
	if err := w.finish(ltx.ChecksumFlag | chk); err != nil {
		w.abort()
		return nil, err
	}
	return w, nil
}
