package replicate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pagefs/pagefs/ltx"
)

// Replica states, as reported by ReplicaStatus.State.
const (
	stateStarting    = "starting"
	stateOK          = "ok"
	stateUnreachable = "unreachable" // requests fail; retrying with backoff
	stateDiverged    = "diverged"    // the destination holds another history; stopped
	stateBlocked     = "blocked"     // the local chain lacks a file the destination needs
)

// errDiverged and errBlocked mark errors that retrying cannot fix.
var (
	errDiverged = errors.New("destination diverged from the local chain")
	errBlocked  = errors.New("local chain incomplete")
)

// replica uploads one database to one destination. Its upload loop owns
// the level-0 position; its compaction loop owns the higher levels. mu
// guards what they share.
type replica struct {
	b      *Backup
	dest   *Destination
	client Client
	db     string
	log    *slog.Logger
	local  *localChain
	posf   string

	wake      chan struct{} // a commit or Close happened
	closing   atomic.Bool
	closed    chan struct{} // closed by startClosing
	closeOnce sync.Once
	head      atomic.Uint64 // newest local TXID notified
	held      atomic.Uint64 // newest TXID the destination holds, for RetentionFloor
	ready     chan struct{} // closed once the remote state is known
	readyOnce sync.Once

	firstUpload chan struct{} // signalled by uploads while no snapshot exists

	mu          sync.Mutex
	pos         ltx.Pos                            // what level 0 holds
	levels      [SnapshotLevel + 1][]*ltx.FileInfo // files known to exist remotely, sorted
	state       string
	err         error
	lastUpload  time.Time
	uploads     uint64
	compactions uint64
}

func newReplica(b *Backup, d *Destination, db string) *replica {
	r := &replica{
		b: b, dest: d, client: d.Client(db), db: db,
		log:    b.log.With("db", db, "backup", d.String()),
		local:  newLocalChain(b.opt.DataDir, db),
		posf:   posPath(b.opt.DataDir, db, d),
		wake:   make(chan struct{}, 1),
		closed: make(chan struct{}),
		ready:  make(chan struct{}),

		firstUpload: make(chan struct{}, 1),
		state:       stateStarting,
	}
	if pos, err := readPosFile(r.posf); err == nil {
		r.pos = pos
		r.held.Store(uint64(pos.TXID))
	} else if !errors.Is(err, os.ErrNotExist) {
		r.log.Warn("ignoring unreadable backup position file", "file", r.posf, "err", err)
	}
	return r
}

func (r *replica) notify(txid uint64) {
	for {
		h := r.head.Load()
		if txid <= h || r.head.CompareAndSwap(h, txid) {
			break
		}
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *replica) startClosing() {
	r.closing.Store(true)
	r.closeOnce.Do(func() { close(r.closed) })
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *replica) status() ReplicaStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := ReplicaStatus{
		DB: r.db, Destination: r.dest.String(), Head: r.head.Load(), Held: uint64(r.pos.TXID),
		State: r.state, LastUpload: r.lastUpload, Uploads: r.uploads, Compactions: r.compactions,
	}
	if r.err != nil {
		st.Err = r.err.Error()
	}
	return st
}

// setState records the outcome of an attempt and logs when the state
// changes, so that an outage logs once, not once per retry.
func (r *replica) setState(state string, err error) {
	r.mu.Lock()
	prev := r.state
	r.state, r.err = state, err
	r.mu.Unlock()
	if state == prev {
		return
	}
	switch state {
	case stateOK:
		if prev == stateStarting {
			r.log.Debug("backup ready", "txid", r.held.Load())
		} else {
			r.log.Info("backup destination reachable again; catching up", "was", prev)
		}
	case stateUnreachable:
		r.log.Warn("backup destination unreachable; the mount keeps serving and retries with backoff", "err", err)
	case stateDiverged, stateBlocked:
		r.log.Error("backup stopped for this database", "state", state, "err", err)
	}
}

// uploadLoop uploads level-0 files as they are committed, merging those
// that wait when the PUT rate is spent.
func (r *replica) uploadLoop() {
	ctx := r.b.ctx
	tokens := newTokenBucket(r.b.opt.MaxPutRate, r.b.opt.PutBurst)
	backoff := time.Duration(0)
	for {
		if ctx.Err() != nil {
			return
		}
		err := r.step(ctx, tokens)
		switch {
		case err == nil:
			backoff = 0
			continue
		case errors.Is(err, errIdle):
			if r.closing.Load() {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			}
			continue
		case errors.Is(err, errDiverged):
			r.setState(stateDiverged, err)
			r.held.Store(0) // what the destination holds is not our history
			select {
			case <-ctx.Done():
			case <-r.closed:
			}
			return
		case errors.Is(err, errBlocked):
			r.setState(stateBlocked, err)
		case ctx.Err() != nil:
			return
		default:
			r.setState(stateUnreachable, err)
		}
		if r.closing.Load() && backoff > 0 {
			return // one retry at Close, not an endless wait
		}
		backoff = min(max(2*backoff, r.b.opt.MinBackoff), r.b.opt.MaxBackoff)
		select {
		case <-ctx.Done():
			return
		case <-r.closed: // one more try, then stop
		case <-time.After(backoff):
		}
	}
}

// errIdle means the destination holds everything committed so far.
var errIdle = errors.New("idle")

// step does one unit of work: learn the remote state, or upload the next
// file (or merged run of files).
func (r *replica) step(ctx context.Context, tokens *tokenBucket) error {
	select {
	case <-r.ready:
	default:
		if err := r.discover(ctx); err != nil {
			return err
		}
		r.readyOnce.Do(func() { close(r.ready) })
		r.setState(stateOK, nil)
	}
	r.mu.Lock()
	pos := r.pos
	r.mu.Unlock()
	head := ltx.TXID(r.head.Load())
	if pos.TXID >= head {
		return errIdle
	}
	// With a token to spare, files go one by one, each a restore point;
	// once the rate is spent, what waits is merged into one upload.
	limit := pos.TXID + 1
	if wait := tokens.take(time.Now()); wait > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		head = ltx.TXID(r.head.Load())
		limit = head
	} else if head-pos.TXID > ltx.TXID(r.b.opt.PutBurst) {
		limit = head // a backlog (after an outage or a restart)
	}
	info, err := r.uploadRun(ctx, pos, limit)
	if errors.Is(err, errBlocked) && r.b.opt.Snapshot != nil {
		// The local chain lacks what this destination needs next: start
		// it over from a snapshot of the live database.
		r.log.Info("local chain lacks the files this destination needs next; uploading a snapshot", "held", pos.TXID, "err", err)
		info, err = r.uploadLiveSnapshot(ctx)
	}
	if err != nil {
		tokens.refund()
		return err
	}
	r.mu.Lock()
	r.pos = info.Pos()
	r.levels[info.Level] = append(r.levels[info.Level], info)
	r.lastUpload = time.Now()
	r.uploads++
	noSnapshot := len(r.levels[SnapshotLevel]) == 0
	r.mu.Unlock()
	if noSnapshot {
		select {
		case r.firstUpload <- struct{}{}:
		default:
		}
	}
	// Record the position before announcing it: whoever sees the new
	// held TXID (retention, status, tests) finds the file up to date.
	if err := writePosFile(r.posf, r.dest, info.Pos()); err != nil {
		r.log.Warn("cannot record the backup position; the next start lists the destination instead", "file", r.posf, "err", err)
	}
	r.held.Store(uint64(info.MaxTXID))
	r.setState(stateOK, nil)
	r.log.Debug("uploaded", "level", info.Level, "min", info.MinTXID, "max", info.MaxTXID, "size", info.Size)
	return nil
}

// uploadLiveSnapshot stores a snapshot of the database as it is now (from
// Options.Snapshot) at level 9.
func (r *replica) uploadLiveSnapshot(ctx context.Context) (*ltx.FileInfo, error) {
	dir := r.tempDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, ".snapshot-*.ltx.tmp")
	if err != nil {
		return nil, err
	}
	defer func() { f.Close(); os.Remove(f.Name()) }()
	bw := bufio.NewWriterSize(f, 256<<10)
	pos, err := r.b.opt.Snapshot(r.db, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: snapshot of the live database: %v", errBlocked, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	info, err := r.client.WriteLTXFile(ctx, SnapshotLevel, 1, pos.TXID, f)
	if err != nil {
		return nil, err
	}
	info.PostApplyChecksum = pos.PostApplyChecksum
	r.notify(uint64(pos.TXID))
	return info, nil
}

// uploadRun uploads the local files after pos, up to head, as one level-0
// file: the single file as it is, or several merged.
func (r *replica) uploadRun(ctx context.Context, pos ltx.Pos, head ltx.TXID) (*ltx.FileInfo, error) {
	run, err := r.local.run(pos.TXID+1, head, maxMergeFiles, maxMergeBytes)
	if err != nil {
		return nil, err
	}
	first, last := run[0], run[len(run)-1]
	if !pos.IsZero() && first.PreApplyChecksum != 0 && pos.PostApplyChecksum != 0 && first.PreApplyChecksum != pos.PostApplyChecksum {
		return nil, fmt.Errorf("%w: the destination holds TXID %s with checksum %s, the local file %s starts from %s",
			errDiverged, pos.TXID, pos.PostApplyChecksum, ltx.FormatFilename(first.MinTXID, first.MaxTXID), first.PreApplyChecksum)
	}
	var f *os.File
	if len(run) == 1 {
		f, err = os.Open(r.local.path(first))
	} else {
		f, err = r.local.merge(ctx, run, r.tempDir())
		if f != nil {
			defer os.Remove(f.Name())
		}
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := r.client.WriteLTXFile(ctx, 0, first.MinTXID, last.MaxTXID, f)
	if err != nil {
		return nil, err
	}
	info.PreApplyChecksum, info.PostApplyChecksum = first.PreApplyChecksum, last.PostApplyChecksum
	return info, nil
}

func (r *replica) tempDir() string {
	if r.b.opt.TempDir != "" {
		return r.b.opt.TempDir
	}
	return filepath.Dir(r.local.dir) // <data>/<db>/ltx
}

// Limits on one merged level-0 upload.
const (
	maxMergeFiles = 1000
	maxMergeBytes = 256 << 20
)

// tokenBucket limits PUTs per second. Not safe for concurrent use.
type tokenBucket struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, burst int) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// take spends a token and returns zero, or returns how long to wait for
// one (the token is then spent already).
func (t *tokenBucket) take(now time.Time) time.Duration {
	if !t.last.IsZero() {
		t.tokens = min(t.burst, t.tokens+now.Sub(t.last).Seconds()*t.rate)
	}
	t.last = now
	t.tokens--
	if t.tokens >= 0 {
		return 0
	}
	return time.Duration(-t.tokens / t.rate * float64(time.Second))
}

// refund returns the token of a failed upload.
func (t *tokenBucket) refund() { t.tokens = min(t.burst, t.tokens+1) }

// discover lists every level of the destination and checks that what it
// holds is a prefix of the local chain.
func (r *replica) discover(ctx context.Context) error {
	var levels [SnapshotLevel + 1][]*ltx.FileInfo
	var top *ltx.FileInfo
	for level := range levels {
		a, err := ListLevel(ctx, r.client, level, 0)
		if err != nil {
			return err
		}
		levels[level] = a
		if n := len(a); n > 0 && (top == nil || a[n-1].MaxTXID > top.MaxTXID) {
			top = a[n-1]
		}
	}
	localHead := ltx.TXID(r.head.Load())
	if localHead == 0 {
		h, err := r.local.head()
		if err != nil {
			return fmt.Errorf("%w: %v", errBlocked, err)
		}
		localHead = h
		r.notify(uint64(h))
	}
	var pos ltx.Pos
	if top == nil {
		if held := r.held.Load(); held > 0 {
			r.log.Warn("backup destination is empty though it held this database; uploading the whole chain again", "held", ltx.TXID(held))
		}
	} else {
		if top.MaxTXID > localHead {
			return fmt.Errorf("%w: %s holds TXIDs up to %s but the local chain ends at %s; another node writes there, or this data directory is older than the backup (restart pagefs to catch up from it)",
				errDiverged, Location(r.client, top.Level, top.MinTXID, top.MaxTXID), top.MaxTXID, localHead)
		}
		tr, err := ReadTrailer(ctx, r.client, top)
		if err != nil {
			return err
		}
		pos = ltx.Pos{TXID: top.MaxTXID, PostApplyChecksum: tr.PostApplyChecksum}
		lf, err := r.local.ending(top.MaxTXID)
		switch {
		case err == nil:
			if pos.PostApplyChecksum != 0 && lf.PostApplyChecksum != 0 && pos.PostApplyChecksum != lf.PostApplyChecksum {
				return fmt.Errorf("%w: at TXID %s %s has checksum %s, the local chain %s",
					errDiverged, top.MaxTXID, Location(r.client, top.Level, top.MinTXID, top.MaxTXID), pos.PostApplyChecksum, lf.PostApplyChecksum)
			}
			pos.PostApplyChecksum = lf.PostApplyChecksum
		case errors.Is(err, os.ErrNotExist):
			// Removed locally: local retention only does that once every
			// destination held it.
		default:
			return fmt.Errorf("%w: %v", errBlocked, err)
		}
	}
	r.mu.Lock()
	r.levels = levels
	r.pos = pos
	r.mu.Unlock()
	r.held.Store(uint64(pos.TXID))
	if err := writePosFile(r.posf, r.dest, pos); err != nil {
		r.log.Warn("cannot record the backup position", "file", r.posf, "err", err)
	}
	return nil
}
