package replicate

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/pagefs/pagefs/ltx"
)

// VerifyReport is what Verify found in one database's backup.
type VerifyReport struct {
	Levels   [SnapshotLevel + 1]LevelReport
	Head     ltx.TXID  // newest TXID a restore reaches; zero if none
	Plan     int       // files a restore of Head reads
	Problems []Problem // empty if the backup is sound
}

// LevelReport summarises one level.
type LevelReport struct {
	Files    int
	Bytes    int64
	Min, Max ltx.TXID // TXID range held, zero if empty
}

// Problem is one thing wrong with a backup, and where.
type Problem struct {
	Location string // object key or path; empty for the database as a whole
	Err      error
}

func (p Problem) String() string {
	if p.Location == "" {
		return p.Err.Error()
	}
	return p.Location + ": " + p.Err.Error()
}

// verifyParallel is how many files Verify downloads at once.
const verifyParallel = 8

// Verify checks one database's backup end to end: every file is read
// whole and decoded (header, every page, page index, file checksum); its
// header must match its name; files of a level must neither overlap nor
// leave gaps after the newest snapshot; every file's pre-apply checksum
// must be the post-apply checksum of any file that ends just before it,
// and files ending at the same TXID must agree; the newest TXID must be
// reachable by a restore. The error is for failures to read the backup at
// all; what is wrong with it is in Problems.
func Verify(ctx context.Context, c Client, progress func(done, total int)) (*VerifyReport, error) {
	levels, err := listAll(ctx, c)
	if err != nil {
		return nil, err
	}
	rep := &VerifyReport{}
	var all []*ltx.FileInfo
	for level, a := range levels {
		lr := &rep.Levels[level]
		for _, fi := range a {
			lr.Files++
			lr.Bytes += fi.Size
			if lr.Min == 0 || fi.MinTXID < lr.Min {
				lr.Min = fi.MinTXID
			}
			lr.Max = max(lr.Max, fi.MaxTXID)
		}
		all = append(all, a...)
	}
	if len(all) == 0 {
		rep.Problems = append(rep.Problems, Problem{Err: fmt.Errorf("no LTX files")})
		return rep, nil
	}
	problem := func(fi *ltx.FileInfo, format string, args ...any) {
		loc := ""
		if fi != nil {
			loc = Location(c, fi.Level, fi.MinTXID, fi.MaxTXID)
		}
		rep.Problems = append(rep.Problems, Problem{Location: loc, Err: fmt.Errorf(format, args...)})
	}

	// Decode every file, a few at a time.
	type decoded struct {
		hdr ltx.Header
		tr  ltx.Trailer
		err error
	}
	results := make([]decoded, len(all))
	var wg sync.WaitGroup
	sem := make(chan struct{}, verifyParallel)
	var mu sync.Mutex
	done := 0
	for i, fi := range all {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			hdr, tr, err := decodeFile(ctx, c, fi)
			results[i] = decoded{hdr, tr, err}
			mu.Lock()
			done++
			if progress != nil {
				progress(done, len(all))
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	post := map[ltx.TXID]ltx.Checksum{}      // MaxTXID -> post-apply checksum
	postFrom := map[ltx.TXID]*ltx.FileInfo{} // which file said so
	for i, fi := range all {
		d := results[i]
		if d.err != nil {
			problem(fi, "%v", d.err)
			continue
		}
		if d.hdr.MinTXID != fi.MinTXID || d.hdr.MaxTXID != fi.MaxTXID {
			problem(fi, "file holds TXIDs %s-%s, not what its name says", d.hdr.MinTXID, d.hdr.MaxTXID)
			continue
		}
		if fi.Level == SnapshotLevel && !d.hdr.IsSnapshot() {
			problem(fi, "level 9 file is not a snapshot (does not start at TXID 1)")
		}
		fi.PreApplyChecksum, fi.PostApplyChecksum = d.hdr.PreApplyChecksum, d.tr.PostApplyChecksum
		if p := d.tr.PostApplyChecksum; p != 0 {
			if q, ok := post[fi.MaxTXID]; ok && q != p {
				problem(fi, "post-apply checksum %s at TXID %s, but %s says %s", p, fi.MaxTXID,
					Location(c, postFrom[fi.MaxTXID].Level, postFrom[fi.MaxTXID].MinTXID, postFrom[fi.MaxTXID].MaxTXID), q)
			}
			post[fi.MaxTXID], postFrom[fi.MaxTXID] = p, fi
		}
	}
	for i, fi := range all {
		if results[i].err != nil || fi.MinTXID <= 1 || fi.PreApplyChecksum == 0 {
			continue
		}
		if q, ok := post[fi.MinTXID-1]; ok && q != fi.PreApplyChecksum {
			problem(fi, "pre-apply checksum %s does not continue TXID %s, whose checksum is %s (from %s)",
				fi.PreApplyChecksum, fi.MinTXID-1, q,
				Location(c, postFrom[fi.MinTXID-1].Level, postFrom[fi.MinTXID-1].MinTXID, postFrom[fi.MinTXID-1].MaxTXID))
		}
	}

	// Overlaps and gaps within each compaction level and level 0.
	newestSnap := rep.Levels[SnapshotLevel].Max
	for level := 0; level < SnapshotLevel; level++ {
		a := append([]*ltx.FileInfo(nil), levels[level]...)
		sort.Slice(a, func(i, j int) bool { return a[i].MinTXID < a[j].MinTXID })
		for i := 1; i < len(a); i++ {
			prev, fi := a[i-1], a[i]
			switch {
			case fi.MinTXID <= prev.MaxTXID:
				problem(fi, "overlaps %s at level %d", ltx.FormatFilename(prev.MinTXID, prev.MaxTXID), level)
			case fi.MinTXID > prev.MaxTXID+1 && fi.MinTXID-1 > newestSnap:
				problem(fi, "gap at level %d: TXIDs %s to %s are missing after %s", level,
					prev.MaxTXID+1, fi.MinTXID-1, ltx.FormatFilename(prev.MinTXID, prev.MaxTXID))
			}
		}
	}

	plan, err := planFromLevels(levels, 0)
	if err != nil {
		problem(nil, "the newest TXID cannot be restored: %v", err)
	} else {
		rep.Head, rep.Plan = plan[len(plan)-1].MaxTXID, len(plan)
	}
	return rep, nil
}

// decodeFile reads a stored file whole and verifies it.
func decodeFile(ctx context.Context, c Client, fi *ltx.FileInfo) (ltx.Header, ltx.Trailer, error) {
	rc, err := c.OpenLTXFile(ctx, fi.Level, fi.MinTXID, fi.MaxTXID, 0, 0)
	if err != nil {
		return ltx.Header{}, ltx.Trailer{}, err
	}
	defer rc.Close()
	dec := ltx.NewDecoder(rc)
	err = dec.Verify() // fails on bytes after the trailer too
	return dec.Header(), dec.Trailer(), err
}
