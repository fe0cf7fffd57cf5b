package mount

import (
	"errors"
	"net/url"
	"os"
	"path"
	"path/filepath"
)

// In DELETE mode SQLite creates and deletes the -journal at every
// transaction. On ext4, allocating an inode scans past every inode freed in
// the last seconds in the same block group, so a busy database's deleted
// journals made each new file (the journal itself, and each LTX file) cost
// most of a millisecond of CPU. pagefs therefore keeps a deleted journal's
// inode in a recycle folder and gives it back when the journal is created
// again: the name disappears and reappears exactly as with unlink and
// create, but no inode is freed.

// recyclePath is where a database's deleted journal waits to be reused.
func (s *Store) recyclePath(journal string) string {
	return filepath.Join(s.cfg.DataDir, ".pagefs", "recycle", url.PathEscape(journal))
}

// recycleJournal removes the journal file at p (the backing path of name)
// by moving it to the recycle folder. It falls back to a plain unlink while
// pagefs has the journal open, because an open handle must not see a reused
// inode's new content.
func (db *DB) recycleJournal(name, p string) error {
	if db.journalOpen > 0 {
		return os.Remove(p)
	}
	rp := db.store.recyclePath(name)
	err := os.Rename(p, rp)
	if errors.Is(err, os.ErrNotExist) && !fileExists(p) {
		return err
	}
	if err != nil {
		if mkErr := os.MkdirAll(filepath.Dir(rp), 0o755); mkErr != nil {
			return os.Remove(p)
		}
		if err = os.Rename(p, rp); err != nil {
			return os.Remove(p)
		}
	}
	return nil
}

// PrepareCreate is called before a file is created under the mount. For a
// journal whose deleted inode waits in the recycle folder, it empties that
// file and moves it back, so the create opens it instead of allocating a
// new inode. It reports whether it did; the caller must then not ask for
// O_EXCL. The file is emptied before it is moved, so a crash never leaves a
// stale hot journal at the journal's path.
func (s *Store) PrepareCreate(name string) bool {
	name = path.Clean(name)
	if kind, _ := Classify(name); kind != KindJournal {
		return false
	}
	p := s.BackingPath(name)
	if fileExists(p) {
		return false
	}
	rp := s.recyclePath(name)
	if err := os.Truncate(rp, 0); err != nil {
		return false
	}
	return os.Rename(rp, p) == nil
}
