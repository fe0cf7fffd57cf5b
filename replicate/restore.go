package replicate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/mount"
)

// RestoreOptions says what to restore. The zero value restores the newest
// transaction.
type RestoreOptions struct {
	TXID      ltx.TXID  // restore to this transaction; zero means the newest
	Timestamp time.Time // or to the last one committed at or before this time

	// Progress, if set, is called after each file is applied with the
	// files and bytes done and the totals.
	Progress func(p Progress)
}

// Progress reports how far a restore is.
type Progress struct {
	Files, TotalFiles int
	Bytes, TotalBytes int64
}

// RestoreResult describes a restored image.
type RestoreResult struct {
	Pos       ltx.Pos   // TXID restored and the image's checksum
	PageSize  uint32    // in bytes
	Commit    uint32    // database size, in pages
	Timestamp time.Time // commit time of the last transaction restored
	Files     int       // files applied
	Bytes     int64     // bytes downloaded
}

// Restore writes the database as of opt's target to out: it picks the
// fewest files (see Plan), streams and applies them while verifying every
// checksum, and writes atomically (a temporary file beside out, fsync,
// rename, fsync of the folder). It refuses to replace an existing out, or
// to write next to a -wal or -journal file that SQLite would apply to it.
func Restore(ctx context.Context, c Client, out string, opt RestoreOptions) (RestoreResult, error) {
	for _, p := range []string{out, out + "-wal", out + "-journal"} {
		if _, err := os.Lstat(p); err == nil {
			return RestoreResult{}, fmt.Errorf("restore: %s already exists; remove it or choose another output", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return RestoreResult{}, fmt.Errorf("restore: %w", err)
		}
	}
	plan, err := Plan(ctx, c, opt.TXID, opt.Timestamp)
	if err != nil {
		return RestoreResult{}, err
	}
	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return RestoreResult{}, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(out)+".*.tmp")
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	res, err := applyPlan(ctx, c, plan, f, opt.Progress)
	if err != nil {
		return res, err
	}
	if err := f.Sync(); err != nil {
		return res, err
	}
	if err := f.Close(); err != nil {
		return res, err
	}
	if err := os.Rename(f.Name(), out); err != nil {
		return res, err
	}
	return res, syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// prefetchFiles bounds how many downloads run ahead of applying; files up
// to prefetchMaxFile bytes are read ahead into memory, larger ones are
// streamed when their turn comes.
const (
	prefetchFiles   = 64
	prefetchMaxFile = 4 << 20
)

// applyPlan applies the files of a plan, the first of which must be a
// snapshot, to img (truncated first). It checks that the files chain (TXIDs,
// and checksums where both sides carry them) and that the final image's
// checksum is the last file's.
func applyPlan(ctx context.Context, c Client, plan []*ltx.FileInfo, img *os.File, progress func(Progress)) (RestoreResult, error) {
	var res RestoreResult
	if len(plan) == 0 {
		return res, errors.New("restore: empty plan")
	}
	if err := img.Truncate(0); err != nil {
		return res, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fetched := prefetch(ctx, c, plan)
	var total int64
	for _, fi := range plan {
		total += fi.Size
	}
	var pos ltx.Pos
	br := bufio.NewReaderSize(nil, 64<<10) // reused: plans may hold many small files
	for i, fi := range plan {
		if i > 0 && fi.MinTXID > pos.TXID+1 {
			return res, fileError(c, fi, fmt.Errorf("gap: the chain ends at TXID %s", pos.TXID))
		}
		var r io.Reader
		var closer io.Closer
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case f := <-fetched[i]:
			if f.err != nil {
				return res, fileError(c, fi, f.err)
			}
			r = f.r
		}
		if r == nil { // large: streamed now rather than held open
			rc, err := c.OpenLTXFile(ctx, fi.Level, fi.MinTXID, fi.MaxTXID, 0, 0)
			if err != nil {
				return res, fileError(c, fi, err)
			}
			r, closer = rc, rc
		}
		br.Reset(r)
		var peek ltx.Header
		if b, err := br.Peek(ltx.HeaderSize); err == nil {
			_ = peek.UnmarshalBinary(b) // ApplyLTX reports a bad header
		}
		prev := ltx.Pos{}
		if fi.MinTXID == pos.TXID+1 && pos.PostApplyChecksum != 0 && !peek.NoChecksum() {
			prev = pos // check the pre-apply checksum
		}
		// A file that overlaps what is applied (levels compact on different
		// schedules) has no pre-apply checksum to check, but its post-apply
		// checksum still describes the state after it.
		hdr, next, err := mount.ApplyLTX(img, br, prev)
		if closer != nil {
			closer.Close()
		}
		if err != nil {
			return res, fileError(c, fi, err)
		}
		if hdr.MinTXID != fi.MinTXID || hdr.MaxTXID != fi.MaxTXID {
			return res, fileError(c, fi, fmt.Errorf("file holds TXIDs %s-%s", hdr.MinTXID, hdr.MaxTXID))
		}
		if i == 0 && !hdr.IsSnapshot() {
			return res, fileError(c, fi, errors.New("the restore does not start from a snapshot (TXID 1)"))
		}
		pos = ltx.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: next.PostApplyChecksum} // zero for a file without checksums
		res.PageSize, res.Commit = hdr.PageSize, hdr.Commit
		res.Timestamp = time.UnixMilli(hdr.Timestamp).UTC()
		res.Files++
		res.Bytes += fi.Size
		if progress != nil {
			progress(Progress{Files: res.Files, TotalFiles: len(plan), Bytes: res.Bytes, TotalBytes: total})
		}
	}
	last := plan[len(plan)-1]
	chk, err := mount.ChecksumFile(img, res.PageSize)
	if err != nil {
		return res, err
	}
	if pos.PostApplyChecksum != 0 && chk != pos.PostApplyChecksum {
		return res, fileError(c, last, fmt.Errorf("%w: the restored image has checksum %s, the file says %s", ltx.ErrPostApplyChecksumMismatch, chk, pos.PostApplyChecksum))
	}
	res.Pos = ltx.Pos{TXID: pos.TXID, PostApplyChecksum: chk}
	return res, nil
}

// fetchedFile is a prefetched file: its bytes, or a nil r for a file too
// large to hold, which the apply loop opens itself.
type fetchedFile struct {
	r   io.Reader
	err error
}

// prefetch downloads the plan's small files ahead of the apply loop, a
// bounded number at a time. Each channel gets one value.
func prefetch(ctx context.Context, c Client, plan []*ltx.FileInfo) []chan fetchedFile {
	out := make([]chan fetchedFile, len(plan))
	for i := range out {
		out[i] = make(chan fetchedFile, 1)
	}
	sem := make(chan struct{}, prefetchFiles)
	go func() {
		for i, fi := range plan {
			if fi.Size > prefetchMaxFile || fi.Size == 0 {
				out[i] <- fetchedFile{}
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				for j := i; j < len(plan); j++ {
					out[j] <- fetchedFile{err: ctx.Err()}
				}
				return
			}
			go func() {
				defer func() { <-sem }()
				rc, err := c.OpenLTXFile(ctx, fi.Level, fi.MinTXID, fi.MaxTXID, 0, 0)
				if err != nil {
					out[i] <- fetchedFile{err: err}
					return
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					out[i] <- fetchedFile{err: err}
					return
				}
				out[i] <- fetchedFile{r: bytes.NewReader(b)}
			}()
		}
	}()
	return out
}

// encodeSnapshot writes a snapshot of the image that res describes to w.
func encodeSnapshot(w io.Writer, img *os.File, res RestoreResult) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	enc := ltx.NewEncoder(bw)
	if err := enc.EncodeHeader(ltx.Header{
		Version: ltx.Version, PageSize: res.PageSize, Commit: res.Commit,
		MinTXID: 1, MaxTXID: res.Pos.TXID, Timestamp: res.Timestamp.UnixMilli(),
	}); err != nil {
		return err
	}
	br := bufio.NewReaderSize(io.NewSectionReader(img, 0, int64(res.Commit)*int64(res.PageSize)), 256<<10)
	buf := make([]byte, res.PageSize)
	lock := ltx.LockPgno(res.PageSize)
	for pgno := uint32(1); pgno <= res.Commit; pgno++ {
		if _, err := io.ReadFull(br, buf); err != nil {
			return fmt.Errorf("read page %d of the image: %w", pgno, err)
		}
		if pgno == lock {
			continue
		}
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, buf); err != nil {
			return err
		}
	}
	enc.SetPostApplyChecksum(res.Pos.PostApplyChecksum)
	if err := enc.Close(); err != nil {
		return err
	}
	return bw.Flush()
}
