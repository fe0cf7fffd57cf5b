package mount

import (
	"os"
	"sort"
)

// A WAL database is written through its -wal and -shm, which the kernel
// passes straight to the backing files, so pagefs never sees those writes.
// A node that stops being primary refuses new read-write opens, but a -wal
// that the application opened for writing while the node was primary stays
// writable: its connection can still commit. The store counts such
// handles, per database, so that a replica waits for them to close before
// it applies the primary's transactions, and so that the lease fence knows
// which databases to lock against them.

// MarkApplication records that process pid, not pagefs, opened f for
// writing. It matters only for a -wal or a -shm; other files are ignored.
func (f *File) MarkApplication(pid int) {
	if (f.kind != KindWAL && f.kind != KindSHM) || !f.writable {
		return
	}
	s := f.store
	s.wmu.Lock()
	defer s.wmu.Unlock()
	was := s.exposedLocked(f.db.name)
	if f.kind == KindWAL {
		if s.walWriters == nil {
			s.walWriters = map[string]map[*File]int{}
		}
		w := s.walWriters[f.db.name]
		if w == nil {
			w = map[*File]int{}
			s.walWriters[f.db.name] = w
		}
		w[f] = pid
	} else {
		if s.appSHM == nil {
			s.appSHM = map[string]int{}
		}
		s.appSHM[f.db.name]++
	}
	f.app = true
	s.exposureChanged(f.db.name, was)
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
	var pids []int
	seen := map[int]bool{}
	for _, pid := range s.walWriters[name] {
		if !seen[pid] {
			seen[pid] = true
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// writeFlag reports whether open flags ask for writing.
func writeFlag(flag int) bool { return flag&(os.O_WRONLY|os.O_RDWR) != 0 }
