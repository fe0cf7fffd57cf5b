package mount

import (
	"errors"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pagefs/pagefs/ltx"
)

// DB is the capture state of one database. Its methods are called by Files
// and the Store; mu serialises them, so a checkpoint write waits while the
// poller captures and vice versa.
type DB struct {
	store  *Store
	log    *slog.Logger
	name   string // relative to the mount root
	path   string // backing database file
	dir    string // <data>/<name>: the chain, the pending file, the head hint
	ltxDir string

	mu       sync.Mutex
	pos      ltx.Pos // head of the chain
	pageSize uint32  // page size at pos; 0 before the first transaction
	commit   uint32  // database size in pages at pos
	hasFile  bool    // the head LTX file exists on disk

	dbf     *os.File // pagefs's own read handle on the backing database
	handles int      // open Files of the database file

	journalHot  bool         // the -journal opens with the journal magic
	txn         *rollbackTxn // pages written since the journal became hot, or an import
	writes      uint64       // changes to the database file, to tell a speculation stale
	journalOpen int          // open Files of the journal
	spec        *speculation // the transaction's LTX file, built when SQLite synced the database
	full        bool         // next commit must be a complete image (file replaced)

	walExists bool
	wal       walCursor
	unsynced  []string // LTX files written since the last gate, not yet fsynced

	hintTXID   ltx.TXID // what the head hint says
	ltxDirMade bool     // ltxDir exists

	hash   hash.Hash64
	failed error // set once capture fails in a way that cannot be retried
	stats  Stats
}

// Stats counts what a database's capture has done since the mount started.
type Stats struct {
	LTXFiles   uint64    // files added to the chain
	LTXBytes   uint64    // their total size
	Pages      uint64    // pages written into them
	LastCommit time.Time // when the newest file was added
}

// Status is a snapshot of a database's state, for status pages and metrics.
type Status struct {
	Name     string
	Pos      ltx.Pos
	PageSize uint32
	Commit   uint32 // database size in pages
	WAL      bool   // a -wal file exists
	Failed   string // why capture stopped, if it did
	Stats    Stats
}

// Status returns a snapshot of the database's state.
func (db *DB) Status() Status {
	db.mu.Lock()
	defer db.mu.Unlock()
	st := Status{Name: db.name, Pos: db.pos, PageSize: db.pageSize, Commit: db.commit, WAL: db.walExists, Stats: db.stats}
	if db.failed != nil {
		st.Failed = db.failed.Error()
	}
	return st
}

// speculation is the pending LTX file of a rollback transaction, built and
// synced while SQLite syncs the database file, just before it commits. If
// the database does not change again before the journal is invalidated,
// the commit uses it: the LTX file's fsync overlaps SQLite's own instead of
// following it.
type speculation struct {
	w      *ltxWriter
	txn    *rollbackTxn
	writes uint64 // db.writes when it was built
	synced bool
}

// rollbackTxn is a transaction in a rollback-journal mode, or an import.
type rollbackTxn struct {
	pageSize uint32                  // page size at the start, for old
	old      map[uint32]ltx.Checksum // page -> checksum before the transaction; 0 if it did not exist
	synced   bool                    // SQLite synced the journal or database
	import_  bool                    // written without a journal into a fresh file
}

func newDB(s *Store, name string) *DB {
	return &DB{
		store:  s,
		log:    s.log.With("db", name),
		name:   name,
		path:   s.BackingPath(name),
		dir:    filepath.Dir(filepath.Dir(s.ltxDir(name))),
		ltxDir: s.ltxDir(name),
		hash:   crc64.New(crc64.MakeTable(crc64.ISO)),
	}
}

// Name returns the database's name relative to the mount root.
func (db *DB) Name() string { return db.name }

// Pos returns the head of the database's chain.
func (db *DB) Pos() ltx.Pos {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.pos
}

// LTXDir returns the folder of the database's level-0 LTX files.
func (db *DB) LTXDir() string { return db.ltxDir }

func sortDBs(a []*DB) { sort.Slice(a, func(i, j int) bool { return a[i].name < a[j].name }) }

func (db *DB) acquire() {
	db.mu.Lock()
	db.handles++
	db.mu.Unlock()
}

// release is called when a File of the database file closes. The last
// close commits an import.
func (db *DB) release() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.handles--
	if db.handles == 0 && db.txn != nil && db.txn.import_ {
		return db.commitRollback(nil)
	}
	return nil
}

// flushImport commits an import in progress.
func (db *DB) flushImport() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.txn != nil && db.txn.import_ {
		return db.commitRollback(nil)
	}
	return nil
}

// readFile returns pagefs's read handle on the backing database file.
func (db *DB) readFile() (*os.File, error) {
	if db.dbf == nil {
		f, err := os.Open(db.path)
		if err != nil {
			return nil, err
		}
		db.dbf = f
	}
	return db.dbf, nil
}

func (db *DB) closeReadFile() {
	if db.dbf != nil {
		db.dbf.Close()
		db.dbf = nil
	}
}

// writeDB handles a write to the database file.
func (db *DB) writeDB(f *os.File, p []byte, off int64) (int, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.beforeDBChange(f, off, off+int64(len(p))); err != nil {
		return 0, err
	}
	return f.WriteAt(p, off)
}

// truncateDB handles a truncation of the database file.
func (db *DB) truncateDB(f *os.File, size int64) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	switch {
	case !db.journalHot && db.txn == nil && !db.walExists && db.pageSize > 0 && size >= int64(db.commit)*int64(db.pageSize):
		// SQLite trims the file to the committed size after the commit is
		// final; the database itself does not change.
	case size < fi.Size():
		if err := db.beforeDBChange(f, size, fi.Size()); err != nil {
			return err
		}
	default:
		if err := db.beforeDBChange(f, fi.Size(), fi.Size()); err != nil {
			return err
		}
	}
	return f.Truncate(size)
}

// beforeDBChange decides what a change of bytes [from, to) of the database
// file means before it happens: a page of a rollback transaction (whose old
// content is recorded), a checkpoint (the WAL is captured first), or the
// start of an import.
func (db *DB) beforeDBChange(f *os.File, from, to int64) error {
	if db.failed != nil {
		return db.failed
	}
	db.writes++
	switch {
	case db.journalHot || (db.txn != nil && db.txn.import_):
		return db.recordOld(from, to)
	case db.walExists:
		return db.gate()
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == 0 || db.pos.TXID == 0 || db.full {
		db.txn = &rollbackTxn{import_: true}
		return nil
	}
	db.log.Error("write to a database without a rollback journal or WAL: journal_mode OFF and MEMORY cannot be captured; use DELETE, TRUNCATE, PERSIST or WAL",
		"offset", from)
	return syscall.EIO
}

// recordOld remembers the checksum of each page in [from, to) before the
// transaction first changes it, so that the rolling checksum can be updated
// from the pages a transaction touches alone.
func (db *DB) recordOld(from, to int64) error {
	txn := db.txn
	if txn == nil {
		txn = &rollbackTxn{}
		db.txn = txn
	}
	if txn.import_ || db.pos.TXID == 0 || db.full || db.pageSize == 0 {
		return nil // committed as a complete image
	}
	if txn.old == nil {
		txn.pageSize = db.pageSize
		txn.old = make(map[uint32]ltx.Checksum)
	}
	ps := int64(txn.pageSize)
	if to <= from {
		return nil
	}
	first, last := uint32(from/ps)+1, uint32((to-1)/ps)+1
	var buf []byte
	for pgno := first; pgno <= last; pgno++ {
		if _, ok := txn.old[pgno]; ok {
			continue
		}
		if pgno > db.commit || pgno == ltx.LockPgno(txn.pageSize) {
			txn.old[pgno] = 0
			continue
		}
		if buf == nil {
			buf = make([]byte, ps)
		}
		if err := db.readPage(pgno, txn.pageSize, buf); err != nil {
			return err
		}
		txn.old[pgno] = ltx.ChecksumPageWith(db.hash, pgno, buf)
	}
	return nil
}

// readPage reads a page of the backing database file; bytes past its end
// read as zeros.
func (db *DB) readPage(pgno, pageSize uint32, buf []byte) error {
	f, err := db.readFile()
	if err != nil {
		return err
	}
	n, err := f.ReadAt(buf[:pageSize], int64(pgno-1)*int64(pageSize))
	if n < int(pageSize) {
		if err != nil && !isEOF(err) {
			return err
		}
		clear(buf[n:pageSize])
	}
	return nil
}

// writeJournal handles a write to the -journal file.
func (db *DB) writeJournal(file *File, p []byte, off int64) (int, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	f := file.f
	if file.flushed { // written again through a descriptor that outlived a close
		file.flushed = false
		db.journalOpen++
	}
	if db.failed != nil {
		return 0, db.failed
	}
	if off < int64(len(journalMagic)) {
		// The write changes the magic: compute what the header will say.
		var hdr [8]byte
		_, _ = f.ReadAt(hdr[:], 0)
		copy(hdr[off:], p)
		hot := isHotJournalHeader(hdr[:])
		switch {
		case hot && !db.journalHot:
			if err := db.startRollbackTxn(); err != nil {
				return 0, err
			}
		case !hot && db.journalHot:
			var n int
			err := db.commitRollback(func() error {
				var err error
				n, err = f.WriteAt(p, off)
				return err
			})
			return n, err
		}
	}
	return f.WriteAt(p, off)
}

// startRollbackTxn notes that the journal became hot: a transaction begins.
// An import in progress is committed first as its own transaction.
func (db *DB) startRollbackTxn() error {
	if db.txn != nil && db.txn.import_ {
		if err := db.commitRollback(nil); err != nil {
			return err
		}
	}
	db.journalHot = true
	if db.txn == nil {
		db.txn = &rollbackTxn{}
	}
	return nil
}

func (db *DB) truncateJournal(f *os.File, size int64) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.journalHot && size < int64(len(journalMagic)) {
		return db.commitRollback(func() error { return f.Truncate(size) })
	}
	return f.Truncate(size)
}

func (db *DB) unlinkJournal(name, p string) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.journalHot {
		return db.commitRollback(func() error { return db.recycleJournal(name, p) })
	}
	return db.recycleJournal(name, p)
}

// syncDB syncs the database file. In a rollback transaction, SQLite syncs
// the database right before it invalidates the journal, so pagefs builds
// the transaction's LTX file now and syncs it alongside.
func (db *DB) syncDB(f *os.File) error {
	db.mu.Lock()
	if !db.journalHot || db.txn == nil || db.txn.import_ || db.failed != nil {
		db.mu.Unlock()
		if err := f.Sync(); err != nil {
			return err
		}
		return db.synced(KindDB)
	}
	db.txn.synced = true
	db.dropSpeculation()
	w, err := db.buildRollbackLTX(db.txn)
	var spec *speculation
	if err == nil && w != nil {
		spec = &speculation{w: w, txn: db.txn, writes: db.writes}
		db.spec = spec
	}
	db.mu.Unlock()
	var wg sync.WaitGroup
	var serr error
	if spec != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serr = spec.w.sync()
		}()
	}
	ferr := f.Sync()
	wg.Wait()
	if spec != nil {
		db.mu.Lock()
		if db.spec == spec {
			if serr != nil {
				db.dropSpeculation()
			} else {
				spec.synced = true
			}
		}
		db.mu.Unlock()
	}
	return ferr
}

// dropSpeculation discards a speculative LTX file.
func (db *DB) dropSpeculation() {
	if db.spec != nil {
		db.spec.w.abort()
		db.spec = nil
	}
}

// synced notes that SQLite synced the database or its journal: the
// transaction's LTX file must be durable before the commit completes. A
// sync of a database being imported commits the import.
func (db *DB) synced(kind Kind) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.txn == nil {
		return nil
	}
	db.txn.synced = true
	if kind == KindDB && db.txn.import_ {
		return db.commitRollback(nil)
	}
	return nil
}

// unlinkDB removes the database file. Its chain stays; a database created
// again under the same name continues it with a complete image.
func (db *DB) unlinkDB(p string) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := os.Remove(p); err != nil {
		return err
	}
	db.closeReadFile()
	db.full = true
	db.txn = nil
	return nil
}

// renamedAway is called when the database file was renamed to another name.
func (db *DB) renamedAway() {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.closeReadFile()
	db.full = true
	db.txn = nil
}

// replaced captures a database file that a rename put in place as a new
// complete image.
func (db *DB) replaced() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.closeReadFile()
	db.full = true
	db.txn = &rollbackTxn{import_: true, synced: true}
	return db.commitRollback(nil)
}

// commitRollback turns the current rollback transaction (or import) into
// the next LTX file. The file is written under a pending name, then
// invalidate (which makes SQLite's commit final: the journal's unlink,
// truncation or zeroed header) runs, then the file is renamed into the
// chain. A nil invalidate commits an import. A transaction that changed
// nothing (a rollback) is dropped.
func (db *DB) commitRollback(invalidate func() error) error {
	txn := db.txn
	db.txn = nil
	db.journalHot = false
	if txn == nil {
		txn = &rollbackTxn{}
	}
	if s := db.spec; s != nil && s.synced && s.txn == txn && s.writes == db.writes {
		// Built and synced when SQLite synced the database; nothing has
		// changed since.
		db.spec = nil
		if invalidate != nil {
			if err := invalidate(); err != nil {
				s.w.abort()
				return err
			}
		}
		return db.publish(s.w, false)
	}
	db.dropSpeculation()
	w, err := db.buildRollbackLTX(txn)
	if err != nil {
		db.fail(fmt.Errorf("capture transaction %d: %w", db.pos.TXID+1, err))
		if invalidate != nil {
			_ = invalidate()
		}
		return db.failed
	}
	if w == nil { // nothing changed: a rollback, or an empty database
		if invalidate != nil {
			return invalidate()
		}
		return nil
	}
	if txn.synced {
		if err := w.sync(); err != nil {
			w.abort()
			return err
		}
	}
	if invalidate != nil {
		if err := invalidate(); err != nil {
			w.abort()
			return err
		}
	}
	return db.publish(w, !txn.synced)
}

// fail marks the database as unable to capture; further writes fail rather
// than go unreplicated.
func (db *DB) fail(err error) {
	if db.failed == nil {
		db.failed = err
		db.log.Error("capture failed; the database refuses writes until pagefs restarts", "err", err)
	}
}

func (db *DB) logCaptureError(err error) {
	db.log.Error("capture", "err", err)
}

// close captures what is left and closes pagefs's handles.
func (db *DB) close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	var err error
	if db.walExists && db.failed == nil {
		// Unmounted: no connection is left, and SQLite's next open trusts
		// the WAL on disk.
		err = db.gateMode(captureRecover)
	}
	db.wal.close()
	db.closeReadFile()
	if db.hasFile {
		db.writeHint()
	}
	return err
}

// hintPath is where the head TXID is noted so that startup finds the head
// without listing the chain.
func (db *DB) hintPath() string { return filepath.Join(db.dir, "head") }

// writeHint notes the head's TXID. A stale or missing hint only costs a
// listing of the chain at startup.
func (db *DB) writeHint() {
	if os.WriteFile(db.hintPath(), []byte(db.pos.TXID.String()+"\n"), 0o644) == nil {
		db.hintTXID = db.pos.TXID
	}
}

func (db *DB) readHint() ltx.TXID {
	b, err := os.ReadFile(db.hintPath())
	if err != nil {
		return 0
	}
	txid, err := ltx.ParseTXID(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return txid
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
