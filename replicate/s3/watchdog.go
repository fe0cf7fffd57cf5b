package s3

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// watchdog cancels a transfer's context once it has made no progress for
// its timeout: a deadline that moves while bytes flow, so a large file on a
// slow link is not cut off but a stalled connection is.
type watchdog struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	d      time.Duration
	timer  *time.Timer
	once   sync.Once
}

func newWatchdog(parent context.Context, d time.Duration) *watchdog {
	ctx, cancel := context.WithCancelCause(parent)
	w := &watchdog{ctx: ctx, cancel: cancel, d: d}
	w.timer = time.AfterFunc(d, func() {
		cancel(fmt.Errorf("no progress for %s", d))
	})
	return w
}

// kick records progress.
func (w *watchdog) kick() { w.timer.Reset(w.d) }

// stop releases the watchdog's resources.
func (w *watchdog) stop() {
	w.once.Do(func() {
		w.timer.Stop()
		w.cancel(nil)
	})
}

// cause explains err by the watchdog's timeout if that is what ended it.
func (w *watchdog) cause(err error) error {
	if c := context.Cause(w.ctx); c != nil && c != context.Canceled && w.ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", err, c)
	}
	return err
}

// bodyReader reads a response body, kicking the watchdog; Close stops it.
type bodyReader struct {
	rc io.ReadCloser
	wd *watchdog
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.wd.kick()
	}
	if err != nil && err != io.EOF {
		err = b.wd.cause(err)
	}
	return n, err
}

func (b *bodyReader) Close() error {
	err := b.rc.Close()
	b.wd.stop()
	return err
}

// kickSeeker is an upload body that kicks the watchdog as the SDK reads it.
type kickSeeker struct {
	rs io.ReadSeeker
	wd *watchdog
}

func (k *kickSeeker) Read(p []byte) (int, error) {
	n, err := k.rs.Read(p)
	if n > 0 {
		k.wd.kick()
	}
	return n, err
}

func (k *kickSeeker) Seek(off int64, whence int) (int64, error) { return k.rs.Seek(off, whence) }
