package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/mount"
	"github.com/pagefs/pagefs/replicate"
)

// BackupConfig is the backup part of Config: the destinations and how the
// upload loop runs. Zero values take replicate.Options's defaults.
type BackupConfig struct {
	Backup        []string      `yaml:"backup"`         // backup URLs; --backup (repeatable), PAGEFS_BACKUP (comma-separated)
	BackupOptions BackupOptions `yaml:"backup-options"` //
}

// BackupOptions tunes the upload loop, compactions and retention.
type BackupOptions struct {
	PutRate           float64    `yaml:"put-rate"`           // level-0 PUTs per second per database and destination; default 1
	PutBurst          int        `yaml:"put-burst"`          // uploads allowed at once after a quiet spell; default 10
	Levels            []Duration `yaml:"levels"`             // compaction intervals of levels 1..N; default [30s, 5m, 1h]
	SnapshotInterval  Duration   `yaml:"snapshot-interval"`  // default 24h
	SnapshotRetention Duration   `yaml:"snapshot-retention"` // default 24h
	L0Retention       Duration   `yaml:"l0-retention"`       // default 5m
	ShutdownTimeout   Duration   `yaml:"shutdown-timeout"`   // how long unmounting waits for uploads; default 10s
	RestoreTimeout    Duration   `yaml:"restore-timeout"`    // how long startup tries to reach the backups; default 1m
}

// applyBackupEnv reads PAGEFS_BACKUP (comma-separated URLs) and
// PAGEFS_BACKUP_PUT_RATE.
func applyBackupEnv(c *BackupConfig, getenv func(string) string) error {
	if v := getenv(envPrefix + "BACKUP"); v != "" {
		c.Backup = splitList(v)
	}
	if v := getenv(envPrefix + "BACKUP_PUT_RATE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return fmt.Errorf("%sBACKUP_PUT_RATE=%q is not a positive number", envPrefix, v)
		}
		c.BackupOptions.PutRate = f
	}
	return nil
}

// destinations parses the backup URLs. Errors name the URL.
func (c *BackupConfig) destinations() ([]*replicate.Destination, error) {
	var out []*replicate.Destination
	seen := map[string]bool{}
	for _, raw := range c.Backup {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := replicate.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		if seen[u.String()] {
			return nil, fmt.Errorf("backup URL %s given twice", u)
		}
		seen[u.String()] = true
		d, err := replicate.NewDestination(u)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func (c *BackupConfig) options(dataDir string, log *slog.Logger) replicate.Options {
	o := c.BackupOptions
	opt := replicate.Options{
		DataDir: dataDir, Logger: log,
		MaxPutRate: o.PutRate, PutBurst: o.PutBurst,
		SnapshotInterval:  time.Duration(o.SnapshotInterval),
		SnapshotRetention: time.Duration(o.SnapshotRetention),
		L0Retention:       time.Duration(o.L0Retention),
	}
	if o.Levels != nil {
		opt.Levels = []replicate.Level{}
		for _, d := range o.Levels {
			opt.Levels = append(opt.Levels, replicate.Level{Interval: time.Duration(d)})
		}
	}
	return opt
}

// backupRun is the backup side of a mount: nil-safe, so a mount without
// backup URLs calls the same methods.
type backupRun struct {
	b     *replicate.Backup
	cfg   BackupConfig
	log   *slog.Logger
	store atomic.Pointer[mount.Store] // set by start
}

// prepareBackup reconciles the data directory with the destinations (a
// fresh node restores every database; one that is behind catches up; a
// diverged one is refused) and returns the upload loop, not yet fed. It
// runs before the mount serves anything. An unreachable destination does
// not stop the mount: the upload loop retries it.
func prepareBackup(ctx context.Context, mcfg Config, log *slog.Logger) (*backupRun, error) {
	cfg, dataDir := mcfg.BackupConfig, mcfg.Data
	dests, err := cfg.destinations()
	if err != nil || len(dests) == 0 {
		return nil, err
	}
	if mcfg.PrimaryURL != "" {
		return nil, fmt.Errorf("--backup on a replica (--primary-url %s): back up from the primary; a replica's chain is the primary's", mcfg.PrimaryURL)
	}
	if err := recoverDataDir(dataDir, log); err != nil {
		return nil, err
	}
	timeout := time.Duration(cfg.BackupOptions.RestoreTimeout)
	if timeout <= 0 {
		timeout = time.Minute
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		results, err := replicate.Reconcile(rctx, dataDir, dests, log)
		var div *replicate.DivergedError
		if errors.As(err, &div) {
			return nil, err
		}
		if err == nil {
			for _, r := range results {
				log.Debug("backup reconciled", "db", r.DB, "action", r.Action, "txid", r.Pos.TXID)
			}
			break
		}
		if rctx.Err() != nil || !transient(err) {
			log.Error("cannot compare the data directory with the backup; mounting what is local, uploads retry in the background", "err", err)
			break
		}
		if attempt == 0 {
			log.Warn("backup unreachable at start; retrying", "err", err, "for", timeout)
		}
		select {
		case <-rctx.Done():
		case <-time.After(time.Second):
		}
	}
	run := &backupRun{cfg: cfg, log: log}
	opt := cfg.options(dataDir, log)
	opt.Snapshot = run.snapshot
	if run.b, err = replicate.NewBackup(opt, dests...); err != nil {
		return nil, err
	}
	return run, nil
}

// snapshot writes a snapshot of a live database, for a destination that
// needs to start over (replicate.Options.Snapshot).
func (r *backupRun) snapshot(db string, w io.Writer) (ltx.Pos, error) {
	store := r.store.Load()
	if store == nil {
		return ltx.Pos{}, errors.New("the mount is not open yet")
	}
	d := store.DB(db)
	if d == nil {
		return ltx.Pos{}, fmt.Errorf("database %s is not open", db)
	}
	return d.WriteSnapshot(w)
}

// transient reports whether an error from Reconcile is worth retrying:
// anything but a refusal or a problem with the data directory's content.
func transient(err error) bool {
	return !errors.Is(err, replicate.ErrTxNotAvailable) && !strings.Contains(err.Error(), "move the")
}

// recoverDataDir opens and closes the data directory once, so that the
// mount's crash recovery settles every chain before it is compared with a
// backup. A data directory without chains needs nothing.
func recoverDataDir(dataDir string, log *slog.Logger) error {
	st, err := mount.Open(mount.Config{DataDir: dataDir, Logger: log})
	if err != nil {
		return err
	}
	return st.Close()
}

// retentionFloor is the mount's RetentionFloor, nil without backups.
func (r *backupRun) retentionFloor() func(string) uint64 {
	if r == nil {
		return nil
	}
	return r.b.RetentionFloor
}

// onCommit is the backup's commit hook, nil without backups. Only a
// primary uploads: a replica's chain is the primary's, which the primary
// uploads itself. A replica promoted by its lease starts uploading at its
// first commit, from the position it persisted.
func (r *backupRun) onCommit() func(mount.Commit) {
	if r == nil {
		return nil
	}
	return func(c mount.Commit) {
		if s := r.store.Load(); s != nil && s.Primary() != "" {
			return
		}
		r.b.OnCommit(c)
	}
}

// start feeds the upload loop every database the mount opened, so that
// commits made while pagefs was down are uploaded too.
func (r *backupRun) start(store *mount.Store) {
	if r == nil {
		return
	}
	r.store.Store(store)
	if store.Primary() != "" {
		return
	}
	for _, db := range store.DBs() {
		r.b.Notify(db.Name(), uint64(db.Pos().TXID))
	}
	for _, d := range r.b.Destinations() {
		r.log.Info("backing up", "to", d.String())
	}
}

// close uploads what is left, within the shutdown timeout. Call it after
// the store is closed.
func (r *backupRun) close() {
	if r == nil {
		return
	}
	timeout := time.Duration(r.cfg.BackupOptions.ShutdownTimeout)
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := r.b.Close(ctx); err != nil {
		r.log.Warn("backup not caught up at shutdown; the next start uploads the rest", "err", err)
	}
}
