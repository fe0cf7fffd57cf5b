package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/replicate/file"
)

// DivergedError is returned by Reconcile when the data directory and a
// destination hold different histories of a database at the same TXID.
type DivergedError struct {
	DB          string
	TXID        ltx.TXID
	Destination string
	Local       ltx.Checksum // checksum in the data directory
	Remote      ltx.Checksum // checksum at the destination
	DataDir     string
}

func (e *DivergedError) Error() string {
	return fmt.Sprintf("database %s: the data directory and %s differ at TXID %s (checksums %s and %s). "+
		"To keep the backup's version, move %s and %s aside and restart: pagefs restores it. "+
		"To keep the local version, remove the backup's copy of %s (or back up under a new prefix) and restart: pagefs uploads it",
		e.DB, e.Destination, e.TXID, e.Local, e.Remote,
		filepath.Join(e.DataDir, filepath.FromSlash(e.DB)), filepath.Join(e.DataDir, ".pagefs", "files", filepath.FromSlash(e.DB)), e.DB)
}

// ReconcileResult says what Reconcile did to one database.
type ReconcileResult struct {
	DB     string
	Action string  // "restored", "caught up", "ahead" (the backup uploads the rest) or "in sync"
	Pos    ltx.Pos // the data directory's head afterwards
	From   string  // destination restored from, if any
}

// Reconcile makes a data directory agree with its backup destinations
// before a mount serves it, for every database any destination holds:
//
//   - not in the data directory: restored from the destination that holds
//     the newest TXID;
//   - in the data directory but behind that destination, with the same
//     history: caught up the same way (the local image is replaced);
//   - ahead: left alone, the Backup uploads the rest;
//   - different history at a TXID both hold: refused with a *DivergedError
//     that says how to choose a side.
//
// A restored database's image goes to <data>/.pagefs/files/<db> and a
// snapshot of it becomes the only file of <data>/<db>/ltx/0, the head the
// mount opens. The mount must not be running on dataDir, and its crash
// recovery must have run (open and close a mount.Store first) so that the
// local chain holds everything SQLite committed.
func Reconcile(ctx context.Context, dataDir string, dests []*Destination, log *slog.Logger) ([]ReconcileResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	names := map[string]bool{}
	for _, d := range dests {
		dbs, err := d.DBs(ctx)
		if err != nil {
			return nil, fmt.Errorf("backup %s: list databases: %w", d, err)
		}
		for _, db := range dbs {
			if db != "." {
				names[db] = true
			}
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var out []ReconcileResult
	for _, db := range sorted {
		res, err := reconcileDB(ctx, dataDir, db, dests, log)
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	return out, nil
}

// remoteHead is the newest file a destination holds of a database.
type remoteHead struct {
	dest   *Destination
	client Client
	levels [SnapshotLevel + 1][]*ltx.FileInfo
	top    *ltx.FileInfo
	pos    ltx.Pos // checksum zero if the file carries none
}

func findRemoteHead(ctx context.Context, d *Destination, db string) (*remoteHead, error) {
	c := d.Client(db)
	levels, err := listAll(ctx, c)
	if err != nil {
		return nil, err
	}
	h := &remoteHead{dest: d, client: c, levels: levels}
	for _, a := range levels {
		if n := len(a); n > 0 && (h.top == nil || a[n-1].MaxTXID > h.top.MaxTXID) {
			h.top = a[n-1]
		}
	}
	if h.top == nil {
		return h, nil
	}
	tr, err := ReadTrailer(ctx, c, h.top)
	if err != nil {
		return nil, err
	}
	h.pos = ltx.Pos{TXID: h.top.MaxTXID, PostApplyChecksum: tr.PostApplyChecksum}
	return h, nil
}

// checksumAt returns the checksum a destination records for the state at
// txid: the trailer of any file that ends there. ok is false if no file
// does or it carries no checksum.
func (h *remoteHead) checksumAt(ctx context.Context, txid ltx.TXID) (ltx.Checksum, bool, error) {
	for _, a := range h.levels {
		for _, fi := range a {
			if fi.MaxTXID == txid {
				tr, err := ReadTrailer(ctx, h.client, fi)
				if err != nil {
					return 0, false, err
				}
				if tr.PostApplyChecksum != 0 {
					return tr.PostApplyChecksum, true, nil
				}
			}
		}
	}
	return 0, false, nil
}

func reconcileDB(ctx context.Context, dataDir, db string, dests []*Destination, log *slog.Logger) (ReconcileResult, error) {
	res := ReconcileResult{DB: db}
	local := newLocalChain(dataDir, db)
	localTXID, err := local.head()
	if err != nil {
		return res, fmt.Errorf("database %s: %w", db, err)
	}
	var localPos ltx.Pos
	_, err = os.Stat(restoringMarker(dataDir, db))
	restoring := err == nil
	if restoring {
		localTXID = 0 // an interrupted restore: start it again
	}
	if localTXID > 0 {
		fi, err := local.ending(localTXID)
		if err != nil {
			return res, fmt.Errorf("database %s: %w", db, err)
		}
		localPos = fi.Pos()
	}
	var best *remoteHead
	for _, d := range dests {
		h, err := findRemoteHead(ctx, d, db)
		if err != nil {
			return res, fmt.Errorf("database %s: backup %s: %w", db, d, err)
		}
		if h.top == nil {
			continue
		}
		// Where both hold a TXID, both must hold the same state.
		at := min(h.pos.TXID, localPos.TXID)
		if at > 0 {
			var remote ltx.Checksum
			ok := false
			if at == h.pos.TXID {
				remote, ok = h.pos.PostApplyChecksum, h.pos.PostApplyChecksum != 0
			} else if remote, ok, err = h.checksumAt(ctx, at); err != nil {
				return res, fmt.Errorf("database %s: %w", db, err)
			}
			localAt := localPos.PostApplyChecksum
			if at != localPos.TXID {
				fi, err := local.ending(at)
				if err != nil && !errors.Is(err, fs.ErrNotExist) {
					return res, fmt.Errorf("database %s: %w", db, err)
				}
				localAt = 0
				if fi != nil {
					localAt = fi.PostApplyChecksum
				}
			}
			if ok && localAt != 0 && remote != localAt {
				return res, &DivergedError{DB: db, TXID: at, Destination: d.String(), Local: localAt, Remote: remote, DataDir: dataDir}
			}
			if !ok && at < h.pos.TXID && at == localPos.TXID {
				// The destination compacted past our head: we cannot prove
				// the histories agree, so we do not replace ours.
				return res, fmt.Errorf("database %s: the data directory ends at TXID %s, %s holds up to %s but no file ends at %s to compare with; move the data directory's copy aside to restore from the backup",
					db, at, d, h.pos.TXID, at)
			}
		}
		if best == nil || h.pos.TXID > best.pos.TXID {
			best = h
		}
	}
	switch {
	case best == nil || best.pos.TXID == localPos.TXID:
		res.Action, res.Pos = "in sync", localPos
		return res, nil
	case best.pos.TXID < localPos.TXID:
		res.Action, res.Pos = "ahead", localPos
		return res, nil
	}
	if localPos.TXID == 0 && !restoring {
		if _, err := os.Stat(backingPath(dataDir, db)); err == nil {
			return res, fmt.Errorf("database %s: %s exists but was never captured, and %s holds TXIDs up to %s; move the file aside to restore from the backup",
				db, backingPath(dataDir, db), best.dest, best.pos.TXID)
		}
	}
	pos, err := installFromBackup(ctx, dataDir, db, best)
	if err != nil {
		return res, fmt.Errorf("database %s: restore from %s: %w", db, best.dest, err)
	}
	res.Action, res.Pos, res.From = "restored", pos, best.dest.String()
	if localPos.TXID > 0 {
		res.Action = "caught up"
	}
	log.Info("database restored from backup before mounting", "db", db, "action", res.Action, "from_txid", localPos.TXID, "txid", pos.TXID, "backup", best.dest.String())
	return res, nil
}

func backingPath(dataDir, db string) string {
	return filepath.Join(dataDir, ".pagefs", "files", filepath.FromSlash(db))
}

// restoringMarker names the file that marks a database whose restore into
// the data directory has begun: until it is gone, the local copy counts as
// absent and the next Reconcile restores it again.
func restoringMarker(dataDir, db string) string {
	return filepath.Join(dataDir, filepath.FromSlash(db), "restoring")
}

// installFromBackup restores the newest state of db from h into the data
// directory: the image replaces the backing file (and its -wal, -shm and
// -journal, whose content the local chain, and so the backup, holds), and a
// snapshot of it replaces the level-0 chain. The steps are ordered so that
// a crash leaves either the old state or no image at all (which the mount
// ignores), never an image that disagrees with its chain; a marker file
// makes the next Reconcile finish the job.
func installFromBackup(ctx context.Context, dataDir, db string, h *remoteHead) (ltx.Pos, error) {
	plan, err := planFromLevels(h.levels, 0)
	if err != nil {
		return ltx.Pos{}, err
	}
	backing := backingPath(dataDir, db)
	chainDir := filepath.Join(dataDir, filepath.FromSlash(db))
	for _, dir := range []string{filepath.Dir(backing), chainDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return ltx.Pos{}, err
		}
	}
	img, err := os.CreateTemp(filepath.Dir(backing), "."+filepath.Base(backing)+".*.restore")
	if err != nil {
		return ltx.Pos{}, err
	}
	defer func() { img.Close(); os.Remove(img.Name()) }()
	res, err := applyPlan(ctx, h.client, plan, img, nil)
	if err != nil {
		return ltx.Pos{}, err
	}
	if err := img.Sync(); err != nil {
		return ltx.Pos{}, err
	}
	snap, err := os.CreateTemp(chainDir, ".snapshot-*.ltx.tmp")
	if err != nil {
		return ltx.Pos{}, err
	}
	defer func() { snap.Close(); os.Remove(snap.Name()) }()
	if err := encodeSnapshot(snap, img, res); err != nil {
		return ltx.Pos{}, err
	}
	if _, err := snap.Seek(0, io.SeekStart); err != nil {
		return ltx.Pos{}, err
	}

	marker := restoringMarker(dataDir, db)
	if err := os.WriteFile(marker, []byte(res.Pos.String()+"\n"), 0o644); err != nil {
		return ltx.Pos{}, err
	}
	if err := syncDir(chainDir); err != nil {
		return ltx.Pos{}, err
	}
	// The old image first: without it the mount ignores the chain.
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		if err := os.Remove(backing + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return ltx.Pos{}, err
		}
	}
	if err := syncDir(filepath.Dir(backing)); err != nil {
		return ltx.Pos{}, err
	}
	old, err := newLocalChain(dataDir, db).list()
	if err != nil {
		return ltx.Pos{}, err
	}
	fc := file.NewClient(chainDir)
	var stale []*ltx.FileInfo
	for _, r := range old {
		stale = append(stale, &ltx.FileInfo{MinTXID: r[0], MaxTXID: r[1]})
	}
	if err := fc.DeleteLTXFiles(ctx, stale); err != nil {
		return ltx.Pos{}, err
	}
	// The mount's head hint would point at the old head.
	if err := os.Remove(filepath.Join(chainDir, "head")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return ltx.Pos{}, err
	}
	if _, err := fc.WriteLTXFile(ctx, 0, 1, res.Pos.TXID, snap); err != nil {
		return ltx.Pos{}, err
	}
	if err := os.Rename(img.Name(), backing); err != nil {
		return ltx.Pos{}, err
	}
	if err := syncDir(filepath.Dir(backing)); err != nil {
		return ltx.Pos{}, err
	}
	if err := os.Remove(marker); err != nil {
		return ltx.Pos{}, err
	}
	return res.Pos, syncDir(chainDir)
}
