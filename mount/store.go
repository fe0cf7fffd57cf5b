package mount

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Config configures a Store. The zero value of each optional field is
// documented beside it.
type Config struct {
	// DataDir holds the backing files (DataDir/.pagefs/files) and the LTX
	// chains (DataDir/<db>/ltx/0). Required.
	DataDir string

	// Logger receives mount events at info and per-transaction detail at
	// debug. Nil discards logs.
	Logger *slog.Logger

	// PollInterval is how often the -shm header of each WAL database is
	// checked for new commits when the database is busy. Zero means 1ms.
	// The poller only serves latency: gated checkpoints alone keep capture
	// exact.
	PollInterval time.Duration

	// IdlePollInterval is the longest pause between polls of a quiet
	// database. Zero means 25ms.
	IdlePollInterval time.Duration

	// Retention says how long local LTX files are kept; zero keeps them
	// forever. RetentionCount keeps at least that many newest files per
	// database whatever their age; zero means 1. The newest file is always
	// kept because startup reads it.
	Retention      time.Duration
	RetentionCount int

	// RetentionFloor, if set, returns the highest TXID of a database that
	// every backup destination holds; local retention never deletes files
	// above it.
	RetentionFloor func(db string) uint64

	// OnCommit, if set, is called after each LTX file is added to a chain.
	// It runs under the database's lock: it must return quickly and must not
	// call back into the Store.
	OnCommit func(c Commit)

	// OnWALWriters, if set, is called with open=true when the application
	// comes to hold the -wal of database db open for writing and its -shm
	// open, and with open=false when it no longer holds both (see
	// Store.WALWriters). The -shm exists while open is true. Calls for
	// one store are serialised; they must return quickly and must not call
	// back into the Store.
	OnWALWriters func(db string, open bool)

	// Tracer, if set, records every operation the Store performs on files,
	// for tests that replay what SQLite did.
	Tracer *Tracer
}

// Commit describes one LTX file added to a database's chain.
type Commit struct {
	DB       string // database name, relative to the mount root
	Path     string // the LTX file
	MinTXID  uint64
	MaxTXID  uint64
	Pages    int
	Commit   uint32 // database size in pages after the file
	Checksum uint64 // post-apply checksum
}

// Store is the set of databases and plain files under one mount. It is safe
// for concurrent use.
type Store struct {
	cfg    Config
	log    *slog.Logger
	root   string // backing files
	lockf  *os.File
	closed chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	dbs     map[string]*DB // by database name
	nextID  uint64         // last File id handed out, for traces
	primary string         // URL of the primary when this node is a read-only replica
	// writeUntil, when set on a primary, is when its lease may lapse: from
	// then on the store refuses writes as a replica does, even before the
	// lease keeper has run to demote it (the process may have been paused).
	writeUntil time.Time

	wmu        sync.Mutex
	walWriters map[string]map[*File]int // database name -> the application's writable -wal handles -> pid
	appSHM     map[string]int           // database name -> the application's writable -shm handles
}

// PrimaryFile is the name, at the mount root, of the file that holds the
// primary's URL on a replica. It does not exist on a primary.
const PrimaryFile = ".primary"

// SetPrimary makes the store a read-only replica of the primary at url, or,
// with an empty url, a primary. On a replica the FUSE layer refuses the
// application's writes to databases (SQLite then opens them read-only and
// reports "attempt to write a readonly database"); only pagefs itself, as it
// applies the primary's transactions, writes them.
func (s *Store) SetPrimary(url string) error {
	s.mu.Lock()
	s.primary = url
	s.mu.Unlock()
	p := filepath.Join(s.root, PrimaryFile)
	if url == "" {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(url+"\n"), 0o444); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// SetWriteDeadline makes a primary refuse the application's writes, as a
// replica does, from t on; the zero time removes the limit. The lease
// keeper moves t forward at each renewal.
func (s *Store) SetWriteDeadline(t time.Time) {
	s.mu.Lock()
	s.writeUntil = t
	s.mu.Unlock()
}

// readOnly reports whether the application's writes are refused: on a
// replica, and on a primary whose write deadline has passed.
func (s *Store) readOnly() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.primary != "" {
		return true
	}
	return !s.writeUntil.IsZero() && !time.Now().Before(s.writeUntil)
}

// Primary returns the primary's URL on a replica, or "" on a primary.
func (s *Store) Primary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.primary
}

// WriteAllowed reports whether a caller other than pagefs may change the
// file name: everything on a primary; on a replica, nothing that belongs to
// a database but its -shm (readers need it), and not the .primary file.
// A primary past its write deadline answers as a replica.
func (s *Store) WriteAllowed(name string) bool {
	if !s.readOnly() {
		return true
	}
	name = path.Clean(name)
	if name == PrimaryFile {
		return false
	}
	kind, base := Classify(name)
	switch kind {
	case KindSHM:
		return true
	case KindJournal, KindWAL:
		return false
	}
	return !s.isTracked(base)
}

// ErrDataDirLocked is returned by Open when another pagefs process holds the
// data directory.
var ErrDataDirLocked = errors.New("data directory is in use by another pagefs process")

// Open opens the data directory, taking its lock, and recovers every
// database whose last run ended in a crash.
func Open(cfg Config) (*Store, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("no data directory given")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Millisecond
	}
	if cfg.IdlePollInterval <= 0 {
		cfg.IdlePollInterval = 25 * time.Millisecond
	}
	if cfg.IdlePollInterval < cfg.PollInterval {
		cfg.IdlePollInterval = cfg.PollInterval
	}
	if cfg.RetentionCount <= 0 {
		cfg.RetentionCount = 1
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.DataDir = dir
	s := &Store{
		cfg:    cfg,
		log:    cfg.Logger,
		root:   filepath.Join(dir, ".pagefs", "files"),
		closed: make(chan struct{}),
		dbs:    make(map[string]*DB),

		walWriters: map[string]map[*File]int{},
		appSHM:     map[string]int{},
	}
	if err := os.MkdirAll(s.root, 0o755); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := s.lock(); err != nil {
		return nil, err
	}
	if err := s.recoverAll(); err != nil {
		s.lockf.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.pollLoop()
	return s, nil
}

func (s *Store) lock() error {
	p := filepath.Join(s.cfg.DataDir, ".pagefs", "lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", s.cfg.DataDir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(p)
		f.Close()
		return fmt.Errorf("%s (pid %s): %w", s.cfg.DataDir, strings.TrimSpace(string(pid)), ErrDataDirLocked)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
	s.lockf = f
	return nil
}

// Root returns the folder that holds the backing files; the FUSE layer
// serves it.
func (s *Store) Root() string { return s.root }

// DataDir returns the data directory.
func (s *Store) DataDir() string { return s.cfg.DataDir }

// Close captures what the WAL databases hold, stops the poller and releases
// the data directory. Files must be closed first.
func (s *Store) Close() error {
	select {
	case <-s.closed:
		return nil
	default:
	}
	close(s.closed)
	s.wg.Wait()
	var errs []error
	for _, db := range s.DBs() {
		if err := db.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.lockf != nil {
		s.lockf.Close()
	}
	return errors.Join(errs...)
}

// DBs returns the databases the store has seen, sorted by name.
func (s *Store) DBs() []*DB {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*DB, 0, len(s.dbs))
	for _, db := range s.dbs {
		out = append(out, db)
	}
	sortDBs(out)
	return out
}

// DB returns the database with the given name, or nil.
func (s *Store) DB(name string) *DB {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dbs[name]
}

// Kind is what a file under the mount is to pagefs.
type Kind int

const (
	KindOther   Kind = iota // not part of a database
	KindDB                  // a database file (or a file that may become one)
	KindJournal             // <db>-journal
	KindWAL                 // <db>-wal
	KindSHM                 // <db>-shm
)

// Classify tells from a file name what the file is and which database it
// belongs to. Names are slash-separated and relative to the mount root.
func Classify(name string) (Kind, string) {
	switch {
	case strings.HasSuffix(name, "-journal"):
		return KindJournal, strings.TrimSuffix(name, "-journal")
	case strings.HasSuffix(name, "-wal"):
		return KindWAL, strings.TrimSuffix(name, "-wal")
	case strings.HasSuffix(name, "-shm"):
		return KindSHM, strings.TrimSuffix(name, "-shm")
	}
	return KindDB, name
}

// Passthrough reports whether files of this kind should bypass the daemon:
// the WAL and SHM, whose writes pagefs reads back from the backing file.
func (k Kind) Passthrough() bool { return k == KindWAL || k == KindSHM }

// BackingPath returns the real path of a file under the mount.
func (s *Store) BackingPath(name string) string {
	return filepath.Join(s.root, filepath.FromSlash(name))
}

// ltxDir returns where a database's level-0 LTX files live.
func (s *Store) ltxDir(name string) string {
	return filepath.Join(s.cfg.DataDir, filepath.FromSlash(name), "ltx", "0")
}

// db returns the state of a database, creating and recovering it on first
// use. It returns nil for names that cannot be databases.
func (s *Store) db(name string) (*DB, error) {
	name = path.Clean(name)
	if name == "." || strings.HasPrefix(name, "..") {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if db := s.dbs[name]; db != nil {
		return db, nil
	}
	db := newDB(s, name)
	if err := db.open(); err != nil {
		return nil, err
	}
	s.dbs[name] = db
	return db, nil
}

// isTracked reports whether a database of that name has a chain or is open.
func (s *Store) isTracked(name string) bool {
	s.mu.Lock()
	_, ok := s.dbs[name]
	s.mu.Unlock()
	if ok {
		return true
	}
	_, err := os.Stat(s.ltxDir(name))
	return err == nil
}

// recoverAll opens every database that has a chain, so that a crash's
// leftovers (pending LTX files, hot journals, uncaptured WAL frames) are
// settled before the mount serves anything.
func (s *Store) recoverAll() error {
	var names []string
	err := filepath.WalkDir(s.cfg.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if p == filepath.Join(s.cfg.DataDir, ".pagefs") {
			return filepath.SkipDir
		}
		if d.Name() == "ltx" {
			rel, err := filepath.Rel(s.cfg.DataDir, filepath.Dir(p))
			if err == nil && rel != "." {
				names = append(names, filepath.ToSlash(rel))
			}
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan data directory %s: %w", s.cfg.DataDir, err)
	}
	for _, name := range names {
		if _, err := os.Stat(s.BackingPath(name)); err != nil {
			continue // chain of a database whose file is gone
		}
		if _, err := s.db(name); err != nil {
			return err
		}
	}
	return nil
}

// pollLoop checks the -shm header of each WAL database and captures new
// commits. It speeds up while databases are busy and backs off when quiet.
func (s *Store) pollLoop() {
	defer s.wg.Done()
	interval := s.cfg.IdlePollInterval
	t := time.NewTimer(interval)
	defer t.Stop()
	lastMaintenance := time.Now()
	for {
		select {
		case <-s.closed:
			return
		case <-t.C:
		}
		if time.Since(lastMaintenance) >= time.Second {
			lastMaintenance = time.Now()
			for _, db := range s.DBs() {
				db.maintain()
			}
		}
		busy := false
		for _, db := range s.DBs() {
			moved, err := db.poll()
			if err != nil {
				db.logCaptureError(err)
			}
			busy = busy || moved
		}
		if busy {
			interval = s.cfg.PollInterval
		} else if interval < s.cfg.IdlePollInterval {
			interval *= 2
			if interval > s.cfg.IdlePollInterval {
				interval = s.cfg.IdlePollInterval
			}
		}
		t.Reset(interval)
	}
}

// errnoOf maps an error to the errno the kernel should see.
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, os.ErrNotExist) {
		return syscall.ENOENT
	}
	return syscall.EIO
}

// Errno converts an error returned by the store into an errno for the
// kernel; nil becomes 0.
func Errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return errnoOf(err)
}
