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

// MarkApplicationWriter records that process pid, not pagefs, opened f
// for writing. It matters only for a -wal; other files are ignored.
func (f *File) MarkApplicationWriter(pid int) {
	if f.kind != KindWAL || !f.writable {
		return
	}
	s := f.store
	s.wmu.Lock()
	defer s.wmu.Unlock()
	base := f.db.name
	if s.walWriters == nil {
		s.walWriters = map[string]map[*File]int{}
	}
	w := s.walWriters[base]
	if w == nil {
		w = map[*File]int{}
		s.walWriters[base] = w
	}
	w[f] = pid
	f.appWriter = true
	if len(w) == 1 && s.cfg.OnWALWriters != nil {
		s.cfg.OnWALWriters(base, true)
	}
}

// forgetWriter undoes MarkApplicationWriter when f closes.
func (f *File) forgetWriter() {
	if !f.appWriter {
		return
	}
	s := f.store
	s.wmu.Lock()
	defer s.wmu.Unlock()
	base := f.db.name
	w := s.walWriters[base]
	delete(w, f)
	if len(w) == 0 {
		delete(s.walWriters, base)
		if s.cfg.OnWALWriters != nil {
			s.cfg.OnWALWriters(base, false)
		}
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
