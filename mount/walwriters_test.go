package mount

import (
	"log/slog"
	"os"
	"reflect"
	"testing"
	"time"
)

// The store counts the application's writable -wal handles per database,
// and reports when the application comes to hold both a writable -wal and
// the -shm (which then exists, for the fence to lock) and when it stops.
func TestWALWriters_CountsTheApplicationsWritableWALHandles(t *testing.T) {
	type change struct {
		db   string
		open bool
	}
	var changes []change
	s, err := Open(Config{
		DataDir: t.TempDir(), PollInterval: time.Hour, IdlePollInterval: time.Hour, Logger: slog.New(slog.DiscardHandler),
		OnWALWriters: func(db string, open bool) { changes = append(changes, change{db, open}) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	open := func(name string, flag int, pid int) *File {
		t.Helper()
		f, err := s.OpenFile(name, flag|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if pid != 0 {
			f.MarkApplication(pid)
		}
		return f
	}
	expect := func(want ...change) {
		t.Helper()
		if !reflect.DeepEqual(changes, want) {
			t.Fatalf("hook saw %v, want %v", changes, want)
		}
	}
	w1 := open("app.db-wal", os.O_RDWR, 300)
	expect() // no -shm yet
	shm := open("app.db-shm", os.O_RDWR, 300)
	expect(change{"app.db", true})
	w2 := open("app.db-wal", os.O_RDWR, 200)
	w3 := open("app.db-wal", os.O_RDWR, 300)
	reader := open("app.db-wal", os.O_RDONLY, 400)   // cannot write: not counted
	fenceSHM := open("app.db-shm", os.O_RDONLY, 500) // the fence's own: read-only, not counted
	own := open("app.db-wal", os.O_RDWR, 0)          // pagefs's own: never marked
	if got, want := s.WALWriters("app.db"), []int{200, 300}; !reflect.DeepEqual(got, want) {
		t.Fatalf("writers %v, want %v", got, want)
	}
	if got := s.WALWriters("other.db"); len(got) != 0 {
		t.Fatalf("other.db has writers %v", got)
	}
	for _, f := range []*File{reader, fenceSHM, own, w1, w2} {
		f.Close()
	}
	if got, want := s.WALWriters("app.db"), []int{300}; !reflect.DeepEqual(got, want) {
		t.Fatalf("writers %v after closing two, want %v", got, want)
	}
	expect(change{"app.db", true})
	shm.Close()
	expect(change{"app.db", true}, change{"app.db", false})
	shm = open("app.db-shm", os.O_RDWR, 300)
	expect(change{"app.db", true}, change{"app.db", false}, change{"app.db", true})
	w3.Close()
	if got := s.WALWriters("app.db"); len(got) != 0 {
		t.Fatalf("writers %v after every -wal handle closed", got)
	}
	expect(change{"app.db", true}, change{"app.db", false}, change{"app.db", true}, change{"app.db", false})
	shm.Close()
}
