package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/mount"
)

// Follower keeps a replica's databases in step with a primary: it streams
// from the primary's Server and applies each frame with an Applier,
// reconnecting with backoff after any error.
type Follower struct {
	store   *mount.Store
	applier *Applier
	node    string
	log     *slog.Logger
	client  *http.Client

	// Lag receives a sample per applied transaction.
	Lag *Lag

	mu        sync.Mutex
	connected bool
	lastErr   string
	primary   string
	// paused holds the databases the application still writes from when
	// this node was primary, with the writers' pids; nothing is applied to
	// them until those close.
	paused map[string][]int
}

// NewFollower returns a Follower for the store; node is this replica's
// advertise URL, sent to the primary for its logs.
func NewFollower(store *mount.Store, applier *Applier, node string, log *slog.Logger) *Follower {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		ResponseHeaderTimeout: 5 * time.Second,
		DisableCompression:    true,
	}
	return &Follower{store: store, applier: applier, node: node, log: log, client: &http.Client{Transport: tr}, Lag: &Lag{}}
}

// FollowerStatus is what a Follower reports about its stream.
type FollowerStatus struct {
	Primary   string
	Connected bool
	LastError string
	// Paused maps each database the replica applies nothing to, because
	// the application still writes it from when this node was primary, to
	// the writers' pids.
	Paused map[string][]int
}

// Status reports the stream's state.
func (f *Follower) Status() FollowerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := FollowerStatus{Primary: f.primary, Connected: f.connected, LastError: f.lastErr}
	if len(f.paused) > 0 {
		st.Paused = maps.Clone(f.paused)
	}
	return st
}

// resumePaused forgets the paused databases whose writers have closed and
// returns the names of those still paused, sorted.
func (f *Follower) resumePaused() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var still []string
	for db := range f.paused {
		if pids := f.store.WALWriters(db); len(pids) > 0 {
			f.paused[db] = pids
			still = append(still, db)
			continue
		}
		delete(f.paused, db)
		f.log.Info("the application closed the connections it opened while this node was primary; catching up", "db", db)
	}
	sort.Strings(still)
	return still
}

func (f *Follower) isPaused(db string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.paused[db]
	return ok
}

// pausedResumable reports whether a paused database's writers have closed.
func (f *Follower) pausedResumable() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for db := range f.paused {
		if len(f.store.WALWriters(db)) == 0 {
			return true
		}
	}
	return false
}

func (f *Follower) pause(db string, pids []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paused == nil {
		f.paused = map[string][]int{}
	}
	f.paused[db] = pids
}

// errCatchUp ends a stream so that the next one asks for a database that
// was paused.
var errCatchUp = errors.New("a paused database's writers closed; reconnecting to catch up")

func (f *Follower) setState(connected bool, err error) {
	f.mu.Lock()
	f.connected = connected
	if err != nil {
		f.lastErr = err.Error()
	}
	f.mu.Unlock()
}

// idleTimeout is how long a stream may stay silent (the primary sends a
// heartbeat every second) before the Follower reconnects.
const idleTimeout = 5 * time.Second

// Run follows the primary at primaryURL until ctx is done. It returns only
// then; errors are logged and retried with backoff (100ms doubling to 5s).
func (f *Follower) Run(ctx context.Context, primaryURL string) {
	f.mu.Lock()
	f.primary = primaryURL
	f.mu.Unlock()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		progressed, err := f.stream(ctx, primaryURL)
		if errors.Is(err, errCatchUp) {
			f.setState(false, nil)
			continue
		}
		f.setState(false, err)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			backoff = 100 * time.Millisecond
		}
		f.log.Warn("replication stream from the primary ended; reconnecting", "primary", primaryURL, "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// request builds the stream request from the replica's positions.
func (f *Follower) request() *Request {
	req := &Request{Node: f.node, DBs: map[string]string{}, Recent: map[string][]string{}, Paused: f.resumePaused()}
	for _, db := range f.store.DBs() {
		p := db.Pos()
		if p.TXID == 0 {
			continue
		}
		req.DBs[db.Name()] = p.String()
		for _, rp := range recentPositions(db.LTXDir(), 64) {
			req.Recent[db.Name()] = append(req.Recent[db.Name()], rp.String())
		}
	}
	return req
}

// recentPositions returns the positions of the newest n files of a chain,
// newest first.
func recentPositions(dir string, n int) []ltx.Pos {
	ents, _ := os.ReadDir(dir)
	type file struct {
		name string
		max  ltx.TXID
	}
	var files []file
	for _, e := range ents {
		if _, max, err := ltx.ParseFilename(e.Name()); err == nil {
			files = append(files, file{e.Name(), max})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].max > files[j].max })
	var out []ltx.Pos
	for _, fl := range files[:min(n, len(files))] {
		post, err := postApply(dir + "/" + fl.name)
		if err == nil {
			out = append(out, ltx.Pos{TXID: fl.max, PostApplyChecksum: post})
		}
	}
	return out
}

// stream runs one connection. It reports whether it applied anything.
func (f *Follower) stream(ctx context.Context, primaryURL string) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body, err := json.Marshal(f.request())
	if err != nil {
		return false, err
	}
	url := strings.TrimSuffix(primaryURL, "/") + StreamPath
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("primary URL %q: %w", primaryURL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("connect to primary %s: %w", primaryURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("primary %s answered %s: %s (it names %q as the primary)", primaryURL, resp.Status, strings.TrimSpace(string(msg)), resp.Header.Get(PrimaryHeader))
	}
	f.setState(true, nil)
	f.log.Info("following the primary", "primary", primaryURL)
	idle := time.AfterFunc(idleTimeout, cancel)
	defer idle.Stop()
	progressed := false
	// Databases the application still writes from when this node was
	// primary get nothing applied; the others keep streaming. Once such a
	// database's writers are gone, the stream restarts and asks for it.
	for {
		h, err := readFrameHeader(resp.Body)
		if err != nil {
			if ctx.Err() != nil && !idle.Stop() {
				return progressed, fmt.Errorf("primary %s sent nothing for %s", primaryURL, idleTimeout)
			}
			return progressed, fmt.Errorf("read from primary %s: %w", primaryURL, err)
		}
		idle.Reset(idleTimeout)
		if f.pausedResumable() {
			return true, errCatchUp
		}
		if h.Type == frameHeartbeat {
			continue
		}
		if f.isPaused(h.DB) {
			if _, err := io.CopyN(&resetWriter{io.Discard, idle}, resp.Body, h.Size); err != nil {
				return progressed, fmt.Errorf("read from primary %s: %w", primaryURL, err)
			}
			continue
		}
		err = f.applyFrame(ctx, h, resp.Body, idle)
		var open *WritersOpenError
		if errors.As(err, &open) {
			f.pause(h.DB, open.PIDs)
			f.log.Warn("not applying to a database the application still writes from when this node was primary; it waits until those connections close",
				"db", h.DB, "pids", fmt.Sprint(open.PIDs))
			continue
		}
		if err != nil {
			return progressed, err
		}
		progressed = true
	}
}

// applyFrame reads one frame's payload and applies it.
func (f *Follower) applyFrame(ctx context.Context, h frameHeader, r io.Reader, idle *time.Timer) error {
	var ra io.ReaderAt
	path := ""
	if h.Type == frameSnapshot {
		tmp, err := os.CreateTemp("", "pagefs-replica-*.ltx")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		if _, err := io.CopyN(&resetWriter{tmp, idle}, r, h.Size); err != nil {
			return fmt.Errorf("receive snapshot of %s: %w", h.DB, err)
		}
		ra, path = tmp, tmp.Name()
	} else {
		buf := make([]byte, h.Size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("receive LTX file of %s: %w", h.DB, err)
		}
		ra = bytes.NewReader(buf)
	}
	var before ltx.Pos
	if db := f.store.DB(h.DB); db != nil {
		before = db.Pos()
	}
	pos, err := f.applier.Apply(ctx, h.DB, ra, h.Size, path)
	if err != nil {
		var mm *MismatchError
		if errors.As(err, &mm) {
			f.log.Error("replica diverged from the primary after applying a transaction; resyncing", "db", h.DB, "err", err)
		}
		return err
	}
	if h.Commit != 0 {
		f.Lag.Add(h.DB, time.Since(time.Unix(0, h.Commit)))
	}
	if h.Type == frameSnapshot {
		f.logSnapshot(h, before, pos)
	}
	return nil
}

// logSnapshot names the local transactions a snapshot discarded: those
// after the newest TXID the replica shared with the primary.
func (f *Follower) logSnapshot(h frameHeader, before, after ltx.Pos) {
	if before.TXID > ltx.TXID(h.Base) {
		f.log.Warn("discarded local transactions that the primary lacks",
			"db", h.DB, "txids", fmt.Sprintf("%s-%s", ltx.TXID(h.Base+1), before.TXID), "first", uint64(h.Base+1), "last", uint64(before.TXID), "primary_pos", after)
	}
	f.log.Info("resynced from the primary's snapshot", "db", h.DB, "pos", after)
}

// resetWriter pushes the idle deadline forward while a large payload
// arrives.
type resetWriter struct {
	w    io.Writer
	idle *time.Timer
}

func (w *resetWriter) Write(p []byte) (int, error) {
	w.idle.Reset(idleTimeout)
	return w.w.Write(p)
}
