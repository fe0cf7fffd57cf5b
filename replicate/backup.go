package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/mount"
)

// Level is a compaction level above level 0.
type Level struct {
	// Interval is how often the files of the level below are merged into
	// one file of this level. Compactions run at multiples of it (wall
	// clock), as Litestream's do. Required.
	Interval time.Duration

	// Retention is how long a file of this level is kept once the level
	// above holds its transactions. Zero keeps it until the oldest snapshot
	// still kept holds them, as Litestream does.
	Retention time.Duration
}

// DefaultLevels are Litestream 0.5's compaction levels: level 1 every 30
// seconds, level 2 every 5 minutes, level 3 every hour.
var DefaultLevels = []Level{{Interval: 30 * time.Second}, {Interval: 5 * time.Minute}, {Interval: time.Hour}}

// Options configures a Backup. The zero value of each optional field is
// documented beside it.
type Options struct {
	// DataDir is the mount's data directory: the level-0 LTX files of
	// database db are in DataDir/db/ltx/0, and the position each
	// destination holds is kept beside them. Required.
	DataDir string

	// Logger receives state changes at info and warn, per-file detail at
	// debug. Nil discards logs.
	Logger *slog.Logger

	// MaxPutRate limits level-0 uploads, per database and destination, in
	// PUTs per second; files that wait are merged into one upload. Zero
	// means 1. PutBurst is how many uploads may go at once after a quiet
	// spell; zero means 10. An idle database costs no request at all.
	MaxPutRate float64
	PutBurst   int

	// Levels are the compaction levels 1 to len(Levels), at most 8. Nil
	// means DefaultLevels; an empty, non-nil slice means no compaction.
	Levels []Level

	// SnapshotInterval is how often a snapshot (level 9) is written; zero
	// means 24h, negative means never (a first snapshot is still written
	// when a destination has none). SnapshotRetention is how long snapshots
	// are kept (the newest always is); zero means 24h.
	SnapshotInterval  time.Duration
	SnapshotRetention time.Duration

	// L0Retention is how long level-0 files are kept once level 1 (or a
	// snapshot) holds their transactions. Zero means 5m; negative keeps
	// them until a snapshot covers them.
	L0Retention time.Duration

	// MinBackoff and MaxBackoff bound the wait between retries when a
	// destination fails. Zero means 1s and 1m.
	MinBackoff, MaxBackoff time.Duration

	// TempDir holds merged files while they upload. Empty means the
	// database's folder in DataDir.
	TempDir string

	// Snapshot, if set, writes a snapshot of a database as it is now (an
	// LTX file spanning TXIDs 1 to its head, as mount.DB.WriteSnapshot
	// does) and returns the head. It lets a destination start over when
	// the local chain no longer holds what it needs next (local retention
	// removed it before the destination was added, or the data directory
	// was restored from another destination). Without it such a destination
	// stays blocked.
	Snapshot func(db string, w io.Writer) (ltx.Pos, error)
}

func (o *Options) setDefaults() error {
	if o.DataDir == "" {
		return errors.New("backup: no data directory")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxPutRate <= 0 {
		o.MaxPutRate = 1
	}
	if o.PutBurst <= 0 {
		o.PutBurst = 10
	}
	if o.Levels == nil {
		o.Levels = DefaultLevels
	}
	if len(o.Levels) > SnapshotLevel-1 {
		return fmt.Errorf("backup: %d compaction levels, at most %d", len(o.Levels), SnapshotLevel-1)
	}
	for i, l := range o.Levels {
		if l.Interval <= 0 {
			return fmt.Errorf("backup: compaction level %d has no interval", i+1)
		}
	}
	if o.SnapshotInterval == 0 {
		o.SnapshotInterval = 24 * time.Hour
	}
	if o.SnapshotRetention <= 0 {
		o.SnapshotRetention = 24 * time.Hour
	}
	if o.L0Retention == 0 {
		o.L0Retention = 5 * time.Minute
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	return nil
}

// Backup uploads every database's LTX chain to one or more destinations,
// each on its own: a slow or broken destination never holds back another.
// It is fed by the mount's OnCommit hook and tells the mount, through
// RetentionFloor, which local files every destination already holds. It is
// safe for concurrent use.
//
// The caller must call Close, after closing the mount's Store, to upload
// what is left and stop.
type Backup struct {
	opt    Options
	dests  []*Destination
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closing  bool
	replicas map[string][]*replica // by database name, one per destination
}

// NewBackup returns a Backup to the destinations. It starts nothing until
// a database is notified.
func NewBackup(opt Options, dests ...*Destination) (*Backup, error) {
	if err := opt.setDefaults(); err != nil {
		return nil, err
	}
	if len(dests) == 0 {
		return nil, errors.New("backup: no destination")
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Backup{
		opt: opt, dests: dests, log: opt.Logger, ctx: ctx, cancel: cancel,
		replicas: make(map[string][]*replica),
	}, nil
}

// Destinations returns the destinations.
func (b *Backup) Destinations() []*Destination { return b.dests }

// OnCommit is the mount's commit hook (mount.Config.OnCommit). It only
// signals: it never waits for an upload.
func (b *Backup) OnCommit(c mount.Commit) { b.Notify(c.DB, c.MaxTXID) }

// Notify tells the Backup that database db's local chain now ends at txid.
// It never blocks on I/O beyond reading a small position file the first
// time a database is seen.
func (b *Backup) Notify(db string, txid uint64) {
	for _, r := range b.replicasOf(db) {
		r.notify(txid)
	}
}

// RetentionFloor returns the highest TXID of db that every destination
// holds (mount.Config.RetentionFloor): local files at or below it may be
// deleted. It is zero until every destination has confirmed something.
func (b *Backup) RetentionFloor(db string) uint64 {
	floor := uint64(math.MaxUint64)
	for _, r := range b.replicasOf(db) {
		floor = min(floor, r.held.Load())
	}
	return floor
}

// replicasOf returns the replicas of a database, starting them on first
// use. After Close it returns nil.
func (b *Backup) replicasOf(db string) []*replica {
	b.mu.Lock()
	defer b.mu.Unlock()
	if rs, ok := b.replicas[db]; ok || b.closing {
		return rs
	}
	rs := make([]*replica, len(b.dests))
	for i, d := range b.dests {
		rs[i] = newReplica(b, d, db)
		b.wg.Add(2)
		go func() { defer b.wg.Done(); rs[i].uploadLoop() }()
		go func() { defer b.wg.Done(); rs[i].compactLoop() }()
	}
	b.replicas[db] = rs
	return rs
}

// Close uploads what every destination lacks, then stops. It gives up
// when ctx ends, leaving the rest for the next start (the position each
// destination holds is kept on disk). It returns an error naming the
// destinations that were not caught up.
func (b *Backup) Close(ctx context.Context) error {
	b.mu.Lock()
	b.closing = true
	var all []*replica
	for _, rs := range b.replicas {
		all = append(all, rs...)
	}
	b.mu.Unlock()
	for _, r := range all {
		r.startClosing()
	}
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		b.cancel()
		<-done
	}
	b.cancel()
	var errs []error
	for _, r := range all {
		st := r.status()
		if st.Held < st.Head {
			errs = append(errs, fmt.Errorf("backup %s of %s: holds TXID %d of %d", r.dest, r.db, st.Held, st.Head))
		}
	}
	return errors.Join(errs...)
}

// ReplicaStatus describes one database at one destination.
type ReplicaStatus struct {
	DB          string
	Destination string
	Head        uint64    // newest local TXID notified
	Held        uint64    // newest TXID the destination is known to hold
	State       string    // "ok", "unreachable", "diverged", "blocked" or "starting"
	Err         string    // the error behind a state other than ok
	LastUpload  time.Time // zero if none since start
	Uploads     uint64    // level-0 PUTs since start
	Compactions uint64    // compaction and snapshot PUTs since start
}

// Status returns the state of every database at every destination, sorted
// by database, then destination order.
func (b *Backup) Status() []ReplicaStatus {
	b.mu.Lock()
	var names []string
	for name := range b.replicas {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []ReplicaStatus
	for _, name := range names {
		for _, r := range b.replicas[name] {
			out = append(out, r.status())
		}
	}
	b.mu.Unlock()
	return out
}
