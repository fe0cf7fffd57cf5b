package mount

import (
	"errors"
	"os"
	"path"
	"syscall"
)

// File is a file under the mount, opened through the Store. The FUSE layer
// holds one per kernel file handle and forwards reads directly to Fd, and
// writes, truncations, syncs and the final close through File's methods so
// the owning database sees them.
type File struct {
	store *Store
	name  string
	kind  Kind
	db    *DB // nil until the file is known to belong to a database
	f     *os.File
	id    uint64 // names the file in traces

	// flushed is set when close(2) flushed a journal handle. The kernel
	// sends the release later, asynchronously; SQLite deletes a journal
	// right after closing it, and a flushed handle does not keep the
	// journal's inode from being recycled.
	flushed bool

	writable bool // the caller asked for writing
	app      bool // counted by MarkApplication
}

func (s *Store) trace(op TraceOp) { s.cfg.Tracer.record(op) }

// OpenFile opens (or, with O_CREATE, creates) the backing file of name.
// WAL and SHM files are always opened read-write when permissions allow,
// because the kernel shares one passthrough file per inode among all of its
// opens.
func (s *Store) OpenFile(name string, flag int, perm os.FileMode) (*File, error) {
	name = path.Clean(name)
	kind, base := Classify(name)
	var db *DB
	if kind != KindDB {
		var err error
		if db, err = s.db(base); err != nil {
			return nil, err
		}
	}
	writable := writeFlag(flag)
	trunc := flag&os.O_TRUNC != 0 && kind != KindSHM
	if trunc {
		flag &^= os.O_TRUNC
	}
	// The kernel turns appends into writes at the file's end, and Go's
	// WriteAt refuses a file opened with O_APPEND.
	flag &^= os.O_APPEND
	p := s.BackingPath(name)
	var f *os.File
	var err error
	if kind.Passthrough() && flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		f, err = os.OpenFile(p, (flag&^os.O_RDONLY)|os.O_RDWR, perm)
		if errors.Is(err, os.ErrPermission) {
			f, err = os.OpenFile(p, flag, perm)
		}
	} else {
		f, err = os.OpenFile(p, flag, perm)
	}
	if err != nil {
		return nil, err
	}
	file := &File{store: s, name: name, kind: kind, db: db, f: f, writable: writable}
	if s.cfg.Tracer != nil {
		s.mu.Lock()
		s.nextID++
		file.id = s.nextID
		s.mu.Unlock()
		s.trace(TraceOp{Op: "open", File: file.id, Name: name, Flag: flag})
	}
	if kind == KindDB {
		if db, err := s.attachIfDatabase(name, f); err != nil {
			f.Close()
			return nil, err
		} else if db != nil {
			file.db = db
			db.acquire()
		}
	}
	switch kind {
	case KindWAL:
		db.walOpened()
	case KindJournal:
		db.mu.Lock()
		db.journalOpen++
		db.mu.Unlock()
	}
	if trunc {
		if err := file.Truncate(0); err != nil {
			file.Close()
			return nil, err
		}
	}
	return file, nil
}

// attachIfDatabase returns the database state for a file that is, or has
// been, a database: it has a chain, or it starts with SQLite's magic.
func (s *Store) attachIfDatabase(name string, f *os.File) (*DB, error) {
	if s.isTracked(name) {
		return s.db(name)
	}
	var hdr [len(sqliteMagic)]byte
	if n, _ := f.ReadAt(hdr[:], 0); n == len(hdr) && isDatabaseHeader(hdr[:]) {
		return s.db(name)
	}
	return nil, nil
}

// Fd returns the backing file, for reads and for kernel passthrough.
func (f *File) Fd() *os.File { return f.f }

// Name returns the file's name relative to the mount root.
func (f *File) Name() string { return f.name }

// Kind returns what the file is to pagefs.
func (f *File) Kind() Kind { return f.kind }

// WriteAt writes p at off, first letting the database record what the write
// means (a page of a transaction, a checkpoint to gate, a journal commit).
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if f.store.cfg.Tracer != nil {
		f.store.trace(TraceOp{Op: "write", File: f.id, Off: off, Data: p})
	}
	switch f.kind {
	case KindDB:
		if f.db == nil && off == 0 && isDatabaseHeader(p) {
			db, err := f.store.db(f.name)
			if err != nil {
				return 0, err
			}
			f.db = db
			db.acquire()
		}
		if f.db != nil {
			return f.db.writeDB(f.f, p, off)
		}
	case KindJournal:
		return f.db.writeJournal(f, p, off)
	}
	return f.f.WriteAt(p, off)
}

// Truncate changes the file's size.
func (f *File) Truncate(size int64) error {
	if f.store.cfg.Tracer != nil {
		f.store.trace(TraceOp{Op: "truncate", File: f.id, Size: size})
	}
	switch f.kind {
	case KindDB:
		if f.db != nil {
			return f.db.truncateDB(f.f, size)
		}
	case KindJournal:
		return f.db.truncateJournal(f.f, size)
	case KindWAL:
		return f.db.truncateWAL(f.f, size)
	}
	return f.f.Truncate(size)
}

// Sync flushes the file to stable storage. A sync of a database file or its
// journal tells pagefs that SQLite wants the current transaction durable.
func (f *File) Sync() error {
	if f.store.cfg.Tracer != nil {
		f.store.trace(TraceOp{Op: "sync", File: f.id})
	}
	if f.kind == KindDB && f.db != nil {
		return f.db.syncDB(f.f)
	}
	if err := f.f.Sync(); err != nil {
		return err
	}
	if f.db != nil && f.kind == KindJournal {
		return f.db.synced(f.kind)
	}
	return nil
}

// Flush runs at every close(2) of a descriptor of the file, before close
// returns. A database written without a journal (cp, VACUUM INTO) is
// committed here, so that its writer's close returns once it is captured.
func (f *File) Flush() error {
	if f.kind == KindJournal {
		f.db.mu.Lock()
		if !f.flushed {
			f.flushed = true
			f.db.journalOpen--
		}
		f.db.mu.Unlock()
	}
	if f.kind == KindDB && f.db != nil {
		return f.db.flushImport()
	}
	return nil
}

// Close closes the file. The last close of a database file written without
// a journal (an import) commits what was written.
func (f *File) Close() error {
	if f.store.cfg.Tracer != nil {
		f.store.trace(TraceOp{Op: "close", File: f.id})
	}
	err := f.f.Close()
	f.forgetApplication()
	if f.kind == KindJournal {
		f.db.mu.Lock()
		if !f.flushed {
			f.db.journalOpen--
		}
		f.db.mu.Unlock()
	}
	if f.kind == KindDB && f.db != nil {
		if rerr := f.db.release(); err == nil {
			err = rerr
		}
	}
	return err
}

// Truncate truncates a file by name, for a truncate without an open handle.
func (s *Store) Truncate(name string, size int64) error {
	f, err := s.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	terr := f.Truncate(size)
	if err := f.Close(); terr == nil {
		terr = err
	}
	return terr
}

// Unlink removes a file. Removing a hot journal commits its transaction;
// removing a WAL first captures every frame it holds.
func (s *Store) Unlink(name string) error {
	name = path.Clean(name)
	s.trace(TraceOp{Op: "unlink", Name: name})
	kind, base := Classify(name)
	p := s.BackingPath(name)
	switch kind {
	case KindJournal, KindWAL:
		db, err := s.db(base)
		if err != nil {
			return err
		}
		if kind == KindJournal {
			return db.unlinkJournal(name, p)
		}
		return db.unlinkWAL(p)
	case KindDB:
		if db := s.DB(name); db != nil {
			return db.unlinkDB(p)
		}
	}
	return os.Remove(p)
}

// Rename renames a file. Companion files of a database cannot be renamed
// while pagefs tracks them; a database renamed over another name is captured
// there as a new image.
func (s *Store) Rename(oldName, newName string, do func() error) error {
	oldName, newName = path.Clean(oldName), path.Clean(newName)
	s.trace(TraceOp{Op: "rename", Name: oldName, To: newName})
	ok, _ := Classify(oldName)
	nk, _ := Classify(newName)
	if ok != KindDB || nk != KindDB {
		if ok == KindSHM && nk == KindSHM {
			return do()
		}
		return syscall.EBUSY
	}
	if err := do(); err != nil {
		return err
	}
	if db := s.DB(oldName); db != nil {
		db.renamedAway()
	}
	f, err := os.Open(s.BackingPath(newName))
	if err != nil {
		return nil // renamed a directory or a file that is gone; nothing to capture
	}
	defer f.Close()
	db, err := s.attachIfDatabase(newName, f)
	if err != nil || db == nil {
		return err
	}
	return db.replaced()
}
