package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/pagefs/pagefs/ltx"
)

// firstSnapshotRetry is how soon a destination without a snapshot tries
// again to get one.
const firstSnapshotRetry = 30 * time.Second

// maxCompactInputs bounds how many files one compaction merges, and so how
// many streams it holds open; a longer backlog becomes several files.
const maxCompactInputs = 256

// compactLoop merges each level into the next at the level's interval,
// writes snapshots, and deletes what retention allows. It works from the
// file lists kept in memory: it makes no request while nothing changes.
func (r *replica) compactLoop() {
	ctx := r.b.ctx
	select {
	case <-ctx.Done():
		return
	case <-r.closed:
		return
	case <-r.ready:
	}
	levels := r.b.opt.Levels
	next := make([]time.Time, len(levels)+1) // last entry: snapshots
	now := time.Now()
	for i, l := range levels {
		next[i] = nextTick(now, l.Interval)
	}
	snapEvery := r.b.opt.SnapshotInterval
	next[len(levels)] = now // a first snapshot if the destination has none
	var lastErr string
	for {
		due := slices.MinFunc(next, func(a, b time.Time) int { return a.Compare(b) })
		timer := time.NewTimer(time.Until(due))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-r.closed:
			timer.Stop()
			return
		case <-r.firstUpload:
			timer.Stop()
			next[len(levels)] = time.Now() // the first snapshot need not wait
			continue
		case <-timer.C:
		}
		if r.closing.Load() {
			return
		}
		now = time.Now()
		var errs []error
		for i, l := range levels {
			if now.Before(next[i]) {
				continue
			}
			next[i] = nextTick(now, l.Interval)
			if err := r.compactLevel(ctx, i+1); err != nil {
				errs = append(errs, fmt.Errorf("compact level %d: %w", i+1, err))
			}
		}
		if !now.Before(next[len(levels)]) {
			r.mu.Lock()
			none := len(r.levels[SnapshotLevel]) == 0
			r.mu.Unlock()
			if none || snapEvery > 0 {
				if err := r.snapshot(ctx); err != nil {
					errs = append(errs, fmt.Errorf("snapshot: %w", err))
				}
			}
			r.mu.Lock()
			none = len(r.levels[SnapshotLevel]) == 0
			r.mu.Unlock()
			switch {
			case none:
				// The attempt failed, or nothing is uploaded yet (the first
				// upload wakes the loop): again later.
				next[len(levels)] = now.Add(firstSnapshotRetry)
			case snapEvery > 0:
				next[len(levels)] = nextTick(now, snapEvery)
			default:
				next[len(levels)] = now.Add(100 * 365 * 24 * time.Hour) // never again
			}
		}
		if err := r.enforceRetention(ctx, now); err != nil {
			errs = append(errs, fmt.Errorf("retention: %w", err))
		}
		if err := errors.Join(errs...); err != nil && err.Error() != lastErr && ctx.Err() == nil {
			r.log.Warn("backup compaction failed; retrying at the next interval", "err", err)
			lastErr = err.Error()
		} else if err == nil {
			lastErr = ""
		}
	}
}

// nextTick returns the next multiple of d after now (wall clock), as
// Litestream schedules its compactions.
func nextTick(now time.Time, d time.Duration) time.Time {
	return now.Truncate(d).Add(d)
}

// compactLevel merges the files of level-1 that level does not hold yet.
func (r *replica) compactLevel(ctx context.Context, level int) error {
	for {
		r.mu.Lock()
		var dstMax ltx.TXID
		if dst := r.levels[level]; len(dst) > 0 {
			dstMax = dst[len(dst)-1].MaxTXID
		}
		var src []*ltx.FileInfo
		for _, fi := range r.levels[level-1] {
			if fi.MinTXID > dstMax && len(src) < maxCompactInputs {
				if len(src) > 0 && fi.MinTXID != src[len(src)-1].MaxTXID+1 {
					break
				}
				src = append(src, fi)
			}
		}
		more := len(src) == maxCompactInputs
		r.mu.Unlock()
		if len(src) == 0 {
			return nil
		}
		info, err := r.compactFiles(ctx, level, src)
		if errors.Is(err, ltx.ErrMismatchedInputs) && len(src) > 1 {
			// Files with and without database checksums (Litestream's,
			// then pagefs's): take them one at a time past the mix.
			info, err = r.compactFiles(ctx, level, src[:1])
			more = true
		}
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.levels[level] = append(r.levels[level], info)
		r.compactions++
		r.mu.Unlock()
		r.log.Debug("compacted", "level", level, "min", info.MinTXID, "max", info.MaxTXID, "files", len(src), "size", info.Size)
		if !more {
			return nil
		}
	}
}

// compactFiles merges src into one file at level. Level-0 inputs are read
// from the local chain when it still has them, saving the GETs.
func (r *replica) compactFiles(ctx context.Context, level int, src []*ltx.FileInfo) (*ltx.FileInfo, error) {
	first, last := src[0], src[len(src)-1]
	var inputs []io.Reader
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	if level == 1 {
		if run, err := r.local.run(first.MinTXID, last.MaxTXID, maxMergeFiles, 1<<62); err == nil && run[len(run)-1].MaxTXID == last.MaxTXID {
			for _, fi := range run {
				f, err := os.Open(r.local.path(fi))
				if err != nil {
					inputs = nil
					break
				}
				closers = append(closers, f)
				inputs = append(inputs, f)
			}
		}
	}
	if inputs == nil {
		for _, fi := range src {
			rc, err := r.client.OpenLTXFile(ctx, fi.Level, fi.MinTXID, fi.MaxTXID, 0, 0)
			if err != nil {
				return nil, fileError(r.client, fi, err)
			}
			closers = append(closers, rc)
			inputs = append(inputs, rc)
		}
	}
	f, err := compactTo(ctx, r.tempDir(), inputs)
	if err != nil {
		return nil, fmt.Errorf("level %d files %s to %s: %w", level-1, first.MinTXID, last.MaxTXID, err)
	}
	defer func() { f.Close(); os.Remove(f.Name()) }()
	hdr, tr, _, err := readEnds(f)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	info, err := r.client.WriteLTXFile(ctx, level, first.MinTXID, last.MaxTXID, f)
	if err != nil {
		return nil, err
	}
	info.PreApplyChecksum, info.PostApplyChecksum = hdr.PreApplyChecksum, tr.PostApplyChecksum
	return info, nil
}

// snapshot writes a snapshot of the position level 0 holds, built from
// the destination's own files (the fewest that reach it), unless the
// newest snapshot is already there.
func (r *replica) snapshot(ctx context.Context) error {
	r.mu.Lock()
	target := r.pos.TXID
	var levels [SnapshotLevel + 1][]*ltx.FileInfo
	for i := range levels {
		levels[i] = slices.Clone(r.levels[i])
	}
	r.mu.Unlock()
	if snaps := levels[SnapshotLevel]; target == 0 || len(snaps) > 0 && snaps[len(snaps)-1].MaxTXID >= target {
		return nil
	}
	plan, err := planFromLevels(levels, target)
	if err != nil {
		return err
	}
	info, err := writeSnapshot(ctx, r.client, plan, r.tempDir())
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.levels[SnapshotLevel] = append(r.levels[SnapshotLevel], info)
	r.compactions++
	r.mu.Unlock()
	r.log.Info("snapshot written", "txid", info.MaxTXID, "size", info.Size, "from_files", len(plan))
	return nil
}

// writeSnapshot applies a plan to a temporary image and stores a snapshot
// of it at level 9.
func writeSnapshot(ctx context.Context, c Client, plan []*ltx.FileInfo, tmpDir string) (*ltx.FileInfo, error) {
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return nil, err
	}
	img, err := os.CreateTemp(tmpDir, ".snapshot-*.db.tmp")
	if err != nil {
		return nil, err
	}
	defer func() { img.Close(); os.Remove(img.Name()) }()
	res, err := applyPlan(ctx, c, plan, img, nil)
	if err != nil {
		return nil, err
	}
	out, err := os.CreateTemp(tmpDir, ".snapshot-*.ltx.tmp")
	if err != nil {
		return nil, err
	}
	defer func() { out.Close(); os.Remove(out.Name()) }()
	if err := encodeSnapshot(out, img, res); err != nil {
		return nil, err
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	info, err := c.WriteLTXFile(ctx, SnapshotLevel, 1, res.Pos.TXID, out)
	if err != nil {
		return nil, err
	}
	info.PostApplyChecksum = res.Pos.PostApplyChecksum
	return info, nil
}

// enforceRetention deletes, level by level, the files that a higher level
// holds and that are older than the level's retention, and snapshots older
// than SnapshotRetention. The newest file of each level is always kept, as
// Litestream keeps it: its TXID is where the next compaction starts.
func (r *replica) enforceRetention(ctx context.Context, now time.Time) error {
	opt := r.b.opt
	top := len(opt.Levels)
	r.mu.Lock()
	var del [SnapshotLevel + 1][]*ltx.FileInfo
	snaps := r.levels[SnapshotLevel]
	var minSnap ltx.TXID // oldest snapshot kept
	for i, fi := range snaps {
		if i < len(snaps)-1 && now.Sub(fi.CreatedAt) > opt.SnapshotRetention {
			del[SnapshotLevel] = append(del[SnapshotLevel], fi)
		} else if minSnap == 0 || fi.MaxTXID < minSnap {
			minSnap = fi.MaxTXID
		}
	}
	levelMax := func(level int) ltx.TXID {
		if a := r.levels[level]; len(a) > 0 {
			return a[len(a)-1].MaxTXID
		}
		return 0
	}
	for level := 0; level <= top; level++ {
		files := r.levels[level]
		var retention time.Duration
		if level == 0 {
			retention = opt.L0Retention
		} else {
			retention = opt.Levels[level-1].Retention
		}
		for i, fi := range files {
			if i == len(files)-1 {
				break
			}
			covered := fi.MaxTXID < minSnap
			if level < top && retention > 0 && fi.MaxTXID <= levelMax(level+1) && now.Sub(fi.CreatedAt) > retention {
				covered = true
			}
			if level == 0 && covered && now.Sub(fi.CreatedAt) <= max(retention, 0) {
				covered = false // level 0 always waits out its retention
			}
			if covered {
				del[level] = append(del[level], fi)
			}
		}
	}
	r.mu.Unlock()
	var errs []error
	for level, a := range del {
		if len(a) == 0 {
			continue
		}
		if err := r.client.DeleteLTXFiles(ctx, a); err != nil {
			errs = append(errs, err)
			continue
		}
		gone := make(map[*ltx.FileInfo]bool, len(a))
		for _, fi := range a {
			gone[fi] = true
		}
		r.mu.Lock()
		r.levels[level] = slices.DeleteFunc(r.levels[level], func(fi *ltx.FileInfo) bool { return gone[fi] })
		r.mu.Unlock()
		r.log.Debug("retention deleted files", "level", level, "count", len(a))
	}
	return errors.Join(errs...)
}
