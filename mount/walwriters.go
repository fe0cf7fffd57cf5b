package mount

import (
	"maps"
	"os"
	"slices"
)

// A WAL database is written through its -wal and -shm, which the kernel
// passes straight to the backing files, so pagefs never sees those writes.
// A node that stops being primary refuses new read-write opens, but a -wal
// that the application opened for writing while the node was primary stays
// writable: its connection can still commit. The store counts such
// handles, per database, so that a replica waits for them to close before
// it applies the primary's transactions, and so that the lease fence knows
// which databases to lock against them.

// SharesWAL reports whether f is a -wal or -shm opened for writing: a
// handle through which a connection commits unseen, the only kind
// MarkApplication counts.
func (f *File) SharesWAL() bool {
	return (f.kind == KindWAL || f.kind == KindSHM) && f.writable
}

// MarkApplication records that process pid, not pagefs, opened f. Only
// handles for which SharesWAL is true are counted.
func (f *File) MarkApplication(pid int) {
	if !f.SharesWAL() {
		return
	}
	s := f.store
	s.wmu.Lock()
	defer s.wmu.Unlock()
	db := f.db.name
	was := s.exposedLocked(db)
	if f.kind == KindWAL {
		if s.walWriters[db] == nil {
			s.walWriters[db] = map[*File]int{}
		}
		s.walWriters[db][f] = pid
	} else {
		s.appSHM[db]++
	}
	f.app = true
	s.exposureChanged(db, was)
}

// forgetApplication undoes MarkApplication when f closes.
func (f *File) forgetApplication() {
	if !f.app {
		return
	}
	s := f.store
	s.wmu.Lock()
	defer s.wmu.Unlock()
	base := f.db.name
	was := s.exposedLocked(base)
	if f.kind == KindWAL {
		delete(s.walWriters[base], f)
		if len(s.walWriters[base]) == 0 {
			delete(s.walWriters, base)
		}
	} else if s.appSHM[base]--; s.appSHM[base] <= 0 {
		delete(s.appSHM, base)
	}
	s.exposureChanged(base, was)
}

// exposedLocked reports whether the application holds the -wal of db open
// for writing and its -shm open, which then exists and can be locked.
func (s *Store) exposedLocked(db string) bool {
	return len(s.walWriters[db]) > 0 && s.appSHM[db] > 0
}

func (s *Store) exposureChanged(db string, was bool) {
	if now := s.exposedLocked(db); now != was && s.cfg.OnWALWriters != nil {
		s.cfg.OnWALWriters(db, now)
	}
}

// WALWriters returns the processes, other than pagefs, that hold the -wal
// of database name open for writing, in increasing order; none when the
// database is not in WAL mode or nobody writes it.
func (s *Store) WALWriters(name string) []int {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return slices.Compact(slices.Sorted(maps.Values(s.walWriters[name])))
}

// writeFlag reports whether open flags ask for writing.
func writeFlag(flag int) bool { return flag&(os.O_WRONLY|os.O_RDWR) != 0 }
