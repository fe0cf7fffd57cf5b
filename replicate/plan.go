package replicate

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/pagefs/pagefs/ltx"
)

// ErrTxNotAvailable is returned when a destination cannot restore the
// requested TXID or time: it is too old (retention removed it), too new, or
// only inside a compaction that goes past it.
var ErrTxNotAvailable = errors.New("transaction not available in the backup")

// Plan returns the fewest files that restore a database to txid (zero
// means the newest), or to the last transaction committed at or before ts
// if ts is not zero: the newest snapshot at or before the target, then
// files from the highest levels, then level 0. It lists every level once.
func Plan(ctx context.Context, c Client, txid ltx.TXID, ts time.Time) ([]*ltx.FileInfo, error) {
	if txid != 0 && !ts.IsZero() {
		return nil, errors.New("restore to a TXID or a time, not both")
	}
	levels, err := listAll(ctx, c)
	if err != nil {
		return nil, err
	}
	if !ts.IsZero() {
		if txid, err = timestampTarget(ctx, c, levels, ts); err != nil {
			return nil, err
		}
	}
	plan, err := planFromLevels(levels, txid)
	if err != nil {
		var gap *gapError
		if errors.As(err, &gap) && gap.next != nil {
			return nil, fmt.Errorf("%w: %s (next file %s)", ErrTxNotAvailable, err, Location(c, gap.next.Level, gap.next.MinTXID, gap.next.MaxTXID))
		}
		return nil, err
	}
	return plan, nil
}

// listAll lists every level, 0 to SnapshotLevel.
func listAll(ctx context.Context, c Client) ([SnapshotLevel + 1][]*ltx.FileInfo, error) {
	var levels [SnapshotLevel + 1][]*ltx.FileInfo
	for level := range levels {
		a, err := ListLevel(ctx, c, level, 0)
		if err != nil {
			return levels, err
		}
		levels[level] = a
	}
	return levels, nil
}

type gapError struct {
	at   ltx.TXID      // last TXID reached
	want ltx.TXID      // target
	next *ltx.FileInfo // first file past the gap, if any
}

func (e *gapError) Error() string {
	return fmt.Sprintf("cannot reach TXID %s: the files reach TXID %s and none continues from there", e.want, e.at)
}

// planFromLevels picks the files that restore target (zero: the newest
// TXID any level holds). Each level must be sorted by TXID. From the newest
// snapshot at or before the target, it repeatedly takes the file that
// continues the chain furthest without passing the target, preferring the
// higher level on a tie; that greedy choice needs the fewest files. A file
// may start before the chain's end (levels are compacted on different
// schedules): applying all of its pages over a later state still gives the
// state at its end.
func planFromLevels(levels [SnapshotLevel + 1][]*ltx.FileInfo, target ltx.TXID) ([]*ltx.FileInfo, error) {
	if target == 0 {
		for _, a := range levels {
			if n := len(a); n > 0 && a[n-1].MaxTXID > target {
				target = a[n-1].MaxTXID
			}
		}
		if target == 0 {
			return nil, fmt.Errorf("%w: the backup holds no files", ErrTxNotAvailable)
		}
	}
	var plan []*ltx.FileInfo
	var cur ltx.TXID
	for _, s := range levels[SnapshotLevel] {
		if s.MinTXID == 1 && s.MaxTXID <= target && s.MaxTXID > cur {
			cur = s.MaxTXID
			plan = []*ltx.FileInfo{s}
		}
	}
	byMin := make([][]*ltx.FileInfo, SnapshotLevel)
	idx := make([]int, SnapshotLevel)
	for level := 0; level < SnapshotLevel; level++ {
		a := append([]*ltx.FileInfo(nil), levels[level]...)
		sort.SliceStable(a, func(i, j int) bool { return a[i].MinTXID < a[j].MinTXID })
		byMin[level] = a
	}
	for cur < target {
		var best *ltx.FileInfo
		var next *ltx.FileInfo
		for level := SnapshotLevel - 1; level >= 0; level-- {
			a := byMin[level]
			for idx[level] < len(a) && a[idx[level]].MinTXID <= cur+1 {
				fi := a[idx[level]]
				idx[level]++
				if fi.MaxTXID > cur && fi.MaxTXID <= target && (best == nil || fi.MaxTXID > best.MaxTXID) {
					best = fi
				}
			}
			// Files considered but not taken end before the chosen one, so
			// they are never useful again; idx only moves forward.
			if idx[level] < len(a) && (next == nil || a[idx[level]].MinTXID < next.MinTXID) {
				next = a[idx[level]]
			}
		}
		if best == nil {
			return nil, &gapError{at: cur, want: target, next: next}
		}
		plan = append(plan, best)
		cur = best.MaxTXID
	}
	return plan, nil
}

// timestampTarget returns the newest TXID committed at or before ts that
// some level holds a file boundary for. A listing's CreatedAt is never
// earlier than the header's timestamp (a file is stored after it is
// committed; S3 rounds it down to the second), so a file created a second
// or more before ts qualifies without a read;
// otherwise headers are read, by binary search: timestamps grow with TXIDs.
func timestampTarget(ctx context.Context, c Client, levels [SnapshotLevel + 1][]*ltx.FileInfo, ts time.Time) (ltx.TXID, error) {
	var target ltx.TXID
	for _, a := range levels {
		var ferr error
		// n = number of leading files whose header time is <= ts.
		n := sort.Search(len(a), func(i int) bool {
			if ferr != nil {
				return true
			}
			if !a[i].CreatedAt.Add(time.Second).After(ts) {
				return false
			}
			hdr, err := ReadHeader(ctx, c, a[i])
			if err != nil {
				ferr = err
				return true
			}
			return time.UnixMilli(hdr.Timestamp).After(ts)
		})
		if ferr != nil {
			return 0, ferr
		}
		if n > 0 && a[n-1].MaxTXID > target {
			target = a[n-1].MaxTXID
		}
	}
	if target == 0 {
		return 0, fmt.Errorf("%w: nothing was committed at or before %s", ErrTxNotAvailable, ts.Format(time.RFC3339))
	}
	return target, nil
}
