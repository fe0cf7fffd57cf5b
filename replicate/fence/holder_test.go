package fence

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// probes holds the files lockOn asks through. They stay open until the
// test ends: closing any descriptor of a file drops every POSIX lock this
// process, where the Holder runs, holds on it.
var probes sync.Map // path -> *os.File

// lockOn reports the lock another owner would find on the write-lock byte
// of path. It asks with an open-file-description lock, which conflicts
// even with the POSIX locks of this process.
func lockOn(t *testing.T, path string) int16 {
	t.Helper()
	v, ok := probes.Load(path)
	if !ok {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		v = f
		probes.Store(path, f)
	}
	f := v.(*os.File)
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: WriteLockByte, Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		t.Fatal(err)
	}
	return lk.Type
}

// syncBuffer collects the Holder's events.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startHolder(t *testing.T) (chan<- Command, *syncBuffer) {
	t.Helper()
	cmds := make(chan Command)
	events := &syncBuffer{}
	h := &Holder{Events: events, ReopenInterval: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.Run(ctx, cmds)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return cmds, events
}

func waitLock(t *testing.T, path string, want int16) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for lockOn(t, path) != want {
		if time.Now().After(deadline) {
			t.Fatalf("lock on %s is %d, want %d", path, lockOn(t, path), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitEvent(t *testing.T, events *syncBuffer, line string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(events.String(), line+"\n") {
		if time.Now().After(deadline) {
			t.Fatalf("no event %q in %q", line, events.String())
		}
		time.Sleep(time.Millisecond)
	}
}

func shmFile(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, make([]byte, 32768), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHolder_LocksCoveredFilesAtTheDeadline(t *testing.T) {
	shm := shmFile(t, "app.db-shm")
	cmds, events := startHolder(t)
	cmds <- Command{Op: OpUntil, Time: Now().Add(time.Hour)}
	cmds <- Command{Op: OpTrack, Path: shm}
	waitEvent(t, events, "opened "+shm)
	cmds <- Command{Op: OpUntil, Time: Now().Add(300 * time.Millisecond)}
	time.Sleep(50 * time.Millisecond)
	if got := lockOn(t, shm); got != unix.F_UNLCK {
		t.Fatalf("locked (%d) before the deadline", got)
	}
	waitLock(t, shm, unix.F_RDLCK)
	waitEvent(t, events, "fenced "+shm)
	cmds <- Command{Op: OpUntil, Time: Now().Add(time.Hour)} // renewed
	waitLock(t, shm, unix.F_UNLCK)
}

func TestHolder_HoldAndUntrack(t *testing.T) {
	a, b := shmFile(t, "a.db-shm"), shmFile(t, "b.db-shm")
	cmds, _ := startHolder(t)
	cmds <- Command{Op: OpTrack, Path: a}
	cmds <- Command{Op: OpHold}
	waitLock(t, a, unix.F_RDLCK)
	cmds <- Command{Op: OpTrack, Path: b} // covered while held: locked at once
	waitLock(t, b, unix.F_RDLCK)
	cmds <- Command{Op: OpUntrack, Path: a} // its writers closed
	waitLock(t, a, unix.F_UNLCK)
	if lockOn(t, b) != unix.F_RDLCK {
		t.Fatal("untracking one file released another")
	}
}

// A connection that is committing holds the write lock; the fence takes
// the byte as soon as it is released.
func TestHolder_WaitsForACommitInProgress(t *testing.T) {
	shm := shmFile(t, "app.db-shm")
	writer, err := os.OpenFile(shm, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	wr := unix.Flock_t{Type: unix.F_WRLCK, Start: WriteLockByte, Len: 1}
	if err := unix.FcntlFlock(writer.Fd(), unix.F_OFD_SETLK, &wr); err != nil {
		t.Fatal(err)
	}
	cmds, events := startHolder(t)
	cmds <- Command{Op: OpTrack, Path: shm}
	cmds <- Command{Op: OpHold}
	waitEvent(t, events, "waiting "+shm)
	if got := lockOn(t, shm); got != unix.F_WRLCK { // still the writer's
		t.Fatalf("lock %d, want the writer's", got)
	}
	wr.Type = unix.F_UNLCK
	if err := unix.FcntlFlock(writer.Fd(), unix.F_OFD_SETLK, &wr); err != nil {
		t.Fatal(err)
	}
	waitLock(t, shm, unix.F_RDLCK)
	wr.Type = unix.F_WRLCK
	if err := unix.FcntlFlock(writer.Fd(), unix.F_OFD_SETLK, &wr); err == nil {
		t.Fatal("a writer took the write lock through the fence")
	}
}

// A file that does not exist yet (the -wal is open, the -shm not yet) is
// retried until it does.
func TestHolder_RetriesAFileItCannotOpen(t *testing.T) {
	shm := filepath.Join(t.TempDir(), "late.db-shm")
	cmds, events := startHolder(t)
	cmds <- Command{Op: OpHold}
	cmds <- Command{Op: OpTrack, Path: shm}
	waitEvent(t, events, "error "+shm+": open "+shm+": no such file or directory")
	if err := os.WriteFile(shm, make([]byte, 32768), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLock(t, shm, unix.F_RDLCK)
}

// blockedWriter is an event reader that has stopped reading, as a pagefs
// stopped with SIGSTOP has.
type blockedWriter struct{ unblock chan struct{} }

func (w blockedWriter) Write(p []byte) (int, error) {
	<-w.unblock
	return len(p), nil
}

// The fence locks every file even when nobody reads its events.
func TestHolder_LocksWhileItsEventsAreNotRead(t *testing.T) {
	dir := t.TempDir()
	w := blockedWriter{unblock: make(chan struct{})}
	cmds := make(chan Command)
	h := &Holder{Events: w}
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(context.Background(), cmds) }()
	defer func() { close(cmds); close(w.unblock); <-done }()
	var paths []string
	for i := range 2 * eventQueue {
		p := filepath.Join(dir, fmt.Sprintf("db%d-shm", i))
		if err := os.WriteFile(p, make([]byte, 8), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		cmds <- Command{Op: OpTrack, Path: p}
	}
	cmds <- Command{Op: OpHold}
	for _, p := range paths {
		waitLock(t, p, unix.F_RDLCK)
	}
}
