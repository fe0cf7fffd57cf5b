package peer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // the "sqlite" driver, built with sqlite_dbpage

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/mount"
)

// Applier applies LTX files to the databases of a replica through its own
// mount. It keeps one SQLite connection per database; Close them before the
// mount is unmounted. Apply calls for one database must not run
// concurrently.
type Applier struct {
	store      *mount.Store
	mountpoint string
	log        *slog.Logger

	mu    sync.Mutex
	conns map[string]*applyConn
}

type applyConn struct {
	db     *sql.DB
	frames int // WAL frames written since the last checkpoint
}

// checkpointFrames is how many WAL frames the Applier lets accumulate
// before it checkpoints; its connections never auto-checkpoint.
const checkpointFrames = 1000

// NewApplier returns an Applier for the store mounted at mountpoint.
func NewApplier(store *mount.Store, mountpoint string, log *slog.Logger) *Applier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Applier{store: store, mountpoint: mountpoint, log: log, conns: map[string]*applyConn{}}
}

// Close closes every connection the Applier opened.
func (a *Applier) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for name, c := range a.conns {
		errs = append(errs, c.db.Close())
		delete(a.conns, name)
	}
	return errors.Join(errs...)
}

func (a *Applier) conn(name string) (*applyConn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.conns[name]; c != nil {
		return c, nil
	}
	p := filepath.Join(a.mountpoint, filepath.FromSlash(name))
	db, err := sql.Open("sqlite", "file:"+p+"?_pragma=busy_timeout(10000)&_pragma=wal_autocheckpoint(0)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	c := &applyConn{db: db}
	a.conns[name] = c
	return c, nil
}

func (a *Applier) dropConn(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.conns[name]; c != nil {
		c.db.Close()
		delete(a.conns, name)
	}
}

// OutOfStepError is returned when an LTX file does not continue the
// replica's position; the stream must restart from the replica's position.
type OutOfStepError struct {
	DB   string
	Have ltx.Pos    // the replica's position
	File ltx.Header // the file's header
}

func (e *OutOfStepError) Error() string {
	return fmt.Sprintf("database %s: LTX file %s-%s (pre-apply %s) does not continue the replica's position %s",
		e.DB, e.File.MinTXID, e.File.MaxTXID, e.File.PreApplyChecksum, e.Have)
}

// MismatchError is returned when the replica's position after applying a
// file is not the primary's: the replica did not reproduce the
// transaction exactly and needs a snapshot.
type MismatchError struct {
	DB        string
	Got, Want ltx.Pos
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("database %s: after applying TXID %s the replica is at %s, the primary at %s", e.DB, e.Want.TXID, e.Got, e.Want)
}

// WritersOpenError is returned, and nothing applied, while processes that
// opened a WAL database for writing when this node was primary still hold
// it open. Such a connection can commit frames pagefs never sees, so the
// replica applies nothing to that database until the connections close; the
// lease fence keeps them from committing meanwhile.
type WritersOpenError struct {
	DB   string
	PIDs []int
}

func (e *WritersOpenError) Error() string {
	return fmt.Sprintf("database %s: processes %v still hold it open for writing from when this node was primary; the replica applies nothing to it until they close it", e.DB, e.PIDs)
}

// Apply applies the LTX file r (size bytes) to database name and returns
// the replica's position after it. The file is decoded and verified
// completely before any page of it is applied. A snapshot replaces the
// database and the replica's chain; any other file must continue the
// replica's position. snapshotPath, for a snapshot, is where the file
// lives (ResetChain re-reads it).
func (a *Applier) Apply(ctx context.Context, name string, r io.ReaderAt, size int64, snapshotPath string) (ltx.Pos, error) {
	dec := ltx.NewDecoder(io.NewSectionReader(r, 0, size))
	if err := dec.Verify(); err != nil {
		return ltx.Pos{}, fmt.Errorf("database %s: LTX file from the primary: %w", name, err)
	}
	hdr, want := dec.Header(), dec.PostApplyPos()
	if pids := a.store.WALWriters(name); len(pids) > 0 {
		return ltx.Pos{}, &WritersOpenError{DB: name, PIDs: pids}
	}
	if hdr.IsSnapshot() {
		if snapshotPath == "" {
			return ltx.Pos{}, errors.New("snapshot without a path")
		}
		return a.applySnapshot(ctx, name, r, size, snapshotPath, want)
	}
	mdb := a.store.DB(name)
	var have ltx.Pos
	if mdb != nil {
		have = mdb.Pos()
	}
	if mdb == nil || hdr.MinTXID != have.TXID+1 || hdr.PreApplyChecksum != have.PostApplyChecksum {
		return have, &OutOfStepError{DB: name, Have: have, File: hdr}
	}
	got, err := a.applyPages(ctx, name, io.NewSectionReader(r, 0, size))
	if err != nil {
		return got, err
	}
	if got != want {
		return got, &MismatchError{DB: name, Got: got, Want: want}
	}
	return got, nil
}

// applySnapshot makes the database the snapshot's image and restarts the
// replica's chain from it.
func (a *Applier) applySnapshot(ctx context.Context, name string, r io.ReaderAt, size int64, path string, want ltx.Pos) (ltx.Pos, error) {
	p := filepath.Join(a.mountpoint, filepath.FromSlash(name))
	fi, err := os.Stat(p)
	var got ltx.Pos
	if errors.Is(err, os.ErrNotExist) || (err == nil && fi.Size() == 0) {
		got, err = a.importNew(name, p, io.NewSectionReader(r, 0, size))
	} else if err == nil {
		got, err = a.applyPages(ctx, name, io.NewSectionReader(r, 0, size))
	}
	if err != nil {
		return got, err
	}
	if got.PostApplyChecksum != want.PostApplyChecksum {
		return got, &MismatchError{DB: name, Got: got, Want: want}
	}
	mdb := a.store.DB(name)
	if mdb == nil {
		return got, fmt.Errorf("database %s: not known to the mount after applying a snapshot", name)
	}
	return mdb.ResetChain(path)
}

// importNew writes a snapshot as a new database file through the mount,
// which captures it as one complete image.
func (a *Applier) importNew(name, p string, r io.Reader) (ltx.Pos, error) {
	a.dropConn(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return ltx.Pos{}, err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return ltx.Pos{}, fmt.Errorf("create %s: %w", p, err)
	}
	dec := ltx.NewDecoder(r)
	if err := dec.DecodeHeader(); err != nil {
		f.Close()
		return ltx.Pos{}, err
	}
	ps := int64(dec.Header().PageSize)
	buf := make([]byte, ps)
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, buf); err == io.EOF {
			break
		} else if err != nil {
			f.Close()
			return ltx.Pos{}, err
		}
		if _, err := f.WriteAt(buf, int64(ph.Pgno-1)*ps); err != nil {
			f.Close()
			return ltx.Pos{}, fmt.Errorf("write %s: %w", p, err)
		}
	}
	if err := f.Close(); err != nil { // the close commits the import
		return ltx.Pos{}, fmt.Errorf("write %s: %w", p, err)
	}
	mdb := a.store.DB(name)
	if mdb == nil {
		return ltx.Pos{}, fmt.Errorf("database %s: the mount did not capture the imported image", name)
	}
	// Open the connection now: it creates the -wal and -shm that the
	// application's read-only connections cannot.
	c, err := a.conn(name)
	if err != nil {
		return ltx.Pos{}, err
	}
	if _, err := c.db.Exec("PRAGMA schema_version"); err != nil {
		return ltx.Pos{}, fmt.Errorf("database %s: open after import: %w", name, err)
	}
	return mdb.Capture()
}

// applyPages writes the pages of one LTX file in one SQLite transaction on
// pagefs's own connection and returns the position the mount captured.
func (a *Applier) applyPages(ctx context.Context, name string, r io.Reader) (ltx.Pos, error) {
	c, err := a.conn(name)
	if err != nil {
		return ltx.Pos{}, err
	}
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return ltx.Pos{}, fmt.Errorf("database %s: open: %w", name, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return ltx.Pos{}, fmt.Errorf("database %s: begin: %w", name, err)
	}
	committed := false
	defer func() {
		if !committed {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	var mode string
	var pageSize, pageCount int64
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return ltx.Pos{}, fmt.Errorf("database %s: %w", name, err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return ltx.Pos{}, fmt.Errorf("database %s: %w", name, err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pageCount); err != nil {
		return ltx.Pos{}, fmt.Errorf("database %s: %w", name, err)
	}
	dec := ltx.NewDecoder(r)
	if err := dec.DecodeHeader(); err != nil {
		return ltx.Pos{}, err
	}
	hdr := dec.Header()
	if int64(hdr.PageSize) != pageSize {
		return ltx.Pos{}, fmt.Errorf("database %s: the primary's page size is %d, the replica's %d: a page-size change cannot be applied to a live replica", name, hdr.PageSize, pageSize)
	}
	ins, err := conn.PrepareContext(ctx, "INSERT INTO sqlite_dbpage(pgno, data) VALUES (?, ?)")
	if err != nil {
		return ltx.Pos{}, fmt.Errorf("database %s: %w", name, err)
	}
	defer ins.Close()
	// Page 1 goes last: once it changes, SQLite reloads the schema, whose
	// pages must be in place by then.
	var page1 []byte
	buf := make([]byte, hdr.PageSize)
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, buf); err == io.EOF {
			break
		} else if err != nil {
			return ltx.Pos{}, err
		}
		if ph.Pgno == 1 {
			page1 = append([]byte(nil), buf...)
			continue
		}
		if _, err := ins.ExecContext(ctx, int64(ph.Pgno), buf); err != nil {
			return ltx.Pos{}, fmt.Errorf("database %s: write page %d: %w", name, ph.Pgno, err)
		}
		c.frames++
	}
	if page1 != nil {
		if _, err := ins.ExecContext(ctx, int64(1), page1); err != nil {
			return ltx.Pos{}, fmt.Errorf("database %s: write page 1: %w", name, err)
		}
		c.frames++
	}
	// The truncation goes after every page: sqlite_dbpage forgets a pending
	// truncation when a page is written after it.
	if int64(hdr.Commit) < pageCount {
		if _, err := ins.ExecContext(ctx, int64(hdr.Commit)+1, nil); err != nil {
			return ltx.Pos{}, fmt.Errorf("database %s: truncate to %d pages: %w", name, hdr.Commit, err)
		}
	}
	mdb := a.store.DB(name)
	if mdb == nil {
		return ltx.Pos{}, fmt.Errorf("database %s: not known to the mount", name)
	}
	commit := func() error {
		committed = true
		_, err := conn.ExecContext(ctx, "COMMIT")
		if err != nil {
			committed = false
			return fmt.Errorf("database %s: commit: %w", name, err)
		}
		return nil
	}
	var pos ltx.Pos
	if strings.EqualFold(mode, "wal") {
		pos, err = mdb.CommitWAL(commit, page1)
	} else if err = commit(); err == nil {
		pos, err = mdb.Capture()
	}
	if err != nil {
		return pos, err
	}
	if c.frames >= checkpointFrames && strings.EqualFold(mode, "wal") {
		c.frames = 0
		if _, err := conn.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
			a.log.Warn("checkpoint", "db", name, "err", err)
		}
	}
	return pos, nil
}
