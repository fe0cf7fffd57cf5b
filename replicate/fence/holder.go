package fence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// WriteLockByte is the offset, in a -shm file, of the byte SQLite locks
// exclusively to write the WAL (WAL_WRITE_LOCK).
const WriteLockByte = 120

// Holder is the loop of the fence process: it applies commands to a State,
// opens the covered files and locks or unlocks them as the State says.
type Holder struct {
	// Events receives one line per change: "opened PATH", "fenced PATH",
	// "lifted PATH", "waiting PATH" (a connection has held the write lock
	// for a while past the deadline) or "error PATH: MESSAGE". Nil discards them. Its reader is pagefs, which
	// may be stopped: lines are written from a queue and dropped when it is
	// full, so a stalled reader never delays a lock.
	Events io.Writer
	// RetryInterval is how often a lock is retried while a connection holds
	// the write lock (it is committing). Zero means 1ms.
	RetryInterval time.Duration
	// ReopenInterval is the longest the Holder waits before it retries a
	// file it could not open; it starts at 1ms and doubles. Zero means
	// 100ms. A file is usually tracked while the application's open of it
	// is in flight, so the first open can miss it by a millisecond.
	ReopenInterval time.Duration

	state   State
	files   map[string]*heldFile
	opening map[string]bool
	opened  chan openResult
	done    chan struct{} // closed when Run returns
	events  chan string   // lines for Events
}

// deadlinePoll is the longest the Holder sleeps while a deadline is ahead.
const deadlinePoll = 50 * time.Millisecond

// eventQueue is how many event lines wait for a slow reader before new
// ones are dropped.
const eventQueue = 256

type heldFile struct {
	f         *os.File
	locked    bool
	reported  bool      // a lock error or a long wait was reported; it is not repeated
	busySince time.Time // when a connection was first found holding the write lock
}

// busyReport is how long the fence waits for a connection's write lock
// before it reports that a transaction is running past the deadline.
const busyReport = 100 * time.Millisecond

type openResult struct {
	path    string
	attempt int
	f       *os.File
	err     error
}

// Run executes commands until cmds is closed or ctx is done, then closes
// every file, which releases its lock.
func (h *Holder) Run(ctx context.Context, cmds <-chan Command) error {
	h.files, h.opening = map[string]*heldFile{}, map[string]bool{}
	h.opened, h.done = make(chan openResult), make(chan struct{})
	h.events = make(chan string, eventQueue)
	written := make(chan struct{})
	go h.writeEvents(written)
	defer func() {
		h.closeAll()
		close(h.events)
		<-written
	}()
	retry := h.RetryInterval
	if retry <= 0 {
		retry = time.Millisecond
	}
	for {
		now := Now()
		var wake <-chan time.Time
		if h.reconcile(now) {
			wake = time.After(retry)
		} else if t, ok := h.state.Wake(now); ok {
			// Go's timers stop while the machine is suspended; the deadline's
			// clock does not. Looking often keeps a resume from running late.
			wake = time.After(min(t.Sub(now), deadlinePoll))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case c, ok := <-cmds:
			if !ok {
				return nil
			}
			h.apply(c)
		case r := <-h.opened:
			h.adopt(r)
		case <-wake:
		}
	}
}

func (h *Holder) apply(c Command) {
	h.state.Apply(c)
	switch c.Op {
	case OpTrack:
		if h.files[c.Path] == nil && !h.opening[c.Path] {
			h.open(c.Path, 0)
		}
	case OpUntrack:
		if f := h.files[c.Path]; f != nil {
			delete(h.files, c.Path)
			f.f.Close()
			if f.locked {
				h.event("lifted", c.Path, nil)
			}
		}
	}
}

// open opens path in the background after delay: the file lives on
// pagefs's mount, and pagefs may be stopped, which is when the fence
// matters most.
func (h *Holder) open(path string, attempt int) {
	h.opening[path] = true
	limit := h.ReopenInterval
	if limit <= 0 {
		limit = 100 * time.Millisecond
	}
	var delay time.Duration
	if attempt > 0 {
		delay = min(time.Millisecond<<min(attempt-1, 20), limit)
	}
	go func() {
		time.Sleep(delay)
		f, err := os.Open(path)
		select {
		case h.opened <- openResult{path: path, attempt: attempt, f: f, err: err}:
		case <-h.done:
			if f != nil {
				f.Close()
			}
		}
	}()
}

// reportAttempt is the failed open that is reported (after about a quarter
// of a second of retries); earlier failures are expected and later ones
// repeat it.
const reportAttempt = 8

func (h *Holder) adopt(r openResult) {
	delete(h.opening, r.path)
	switch {
	case !h.state.Covers(r.path):
		if r.f != nil {
			r.f.Close()
		}
	case r.err != nil:
		if r.attempt == reportAttempt {
			h.event("error", r.path, r.err)
		}
		h.open(r.path, r.attempt+1)
	default:
		h.files[r.path] = &heldFile{f: r.f}
		h.event("opened", r.path, nil)
	}
}

// reconcile locks or unlocks every open file as the state says at now. It
// reports whether a lock must be retried.
func (h *Holder) reconcile(now time.Time) (retry bool) {
	want := h.state.Locked(now)
	for p, f := range h.files {
		switch {
		case want && !f.locked:
			err := setLock(f.f, unix.F_RDLCK)
			if err == nil {
				f.locked, f.reported, f.busySince = true, false, time.Time{}
				h.event("fenced", p, nil)
				continue
			}
			busy := errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES)
			switch {
			case f.reported:
			case !busy:
				f.reported = true
				h.event("error", p, err)
			case f.busySince.IsZero():
				f.busySince = now
			case now.Sub(f.busySince) >= busyReport:
				// A transaction still running past the deadline commits; say so.
				f.reported = true
				h.event("waiting", p, nil)
			}
			retry = true
		case !want && f.locked:
			if err := setLock(f.f, unix.F_UNLCK); err != nil {
				h.event("error", p, err)
				continue
			}
			f.locked = false
			h.event("lifted", p, nil)
		}
	}
	return retry
}

func (h *Holder) closeAll() {
	for p, f := range h.files {
		f.f.Close()
		delete(h.files, p)
	}
	// Files still opening close as their opens return; an open may wait on
	// a stopped pagefs, so Run does not wait for them.
	close(h.done)
}

// event queues a line for Events, or drops it when the queue is full.
func (h *Holder) event(what, path string, err error) {
	if h.Events == nil {
		return
	}
	line := what + " " + path + "\n"
	if err != nil {
		line = fmt.Sprintf("%s %s: %v\n", what, path, err)
	}
	select {
	case h.events <- line:
	default:
	}
}

func (h *Holder) writeEvents(done chan<- struct{}) {
	defer close(done)
	for line := range h.events {
		if h.Events != nil {
			_, _ = io.WriteString(h.Events, line)
		}
	}
}

// setLock sets (F_RDLCK) or clears (F_UNLCK) this process's lock on the
// write-lock byte of f, without waiting.
func setLock(f *os.File, typ int16) error {
	lk := unix.Flock_t{Type: typ, Whence: io.SeekStart, Start: WriteLockByte, Len: 1}
	return unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
}
