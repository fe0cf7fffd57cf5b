package replicate

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pagefs/pagefs/ltx"
)

// localChain reads a database's level-0 files in the mount's data
// directory. The mount names each file after its TXID range; files it
// captures hold one TXID, a restored head may hold many.
type localChain struct {
	dir string // <data>/<db>/ltx/0
}

func newLocalChain(dataDir, db string) *localChain {
	return &localChain{dir: filepath.Join(dataDir, filepath.FromSlash(db), "ltx", "0")}
}

func (l *localChain) path(fi *ltx.FileInfo) string {
	return filepath.Join(l.dir, ltx.FormatFilename(fi.MinTXID, fi.MaxTXID))
}

// stat reads the header and trailer of a local file.
func (l *localChain) stat(min, max ltx.TXID) (*ltx.FileInfo, error) {
	p := filepath.Join(l.dir, ltx.FormatFilename(min, max))
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hdr, tr, size, err := readEnds(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if hdr.MinTXID != min || hdr.MaxTXID != max {
		return nil, fmt.Errorf("%s: file holds TXIDs %s-%s", p, hdr.MinTXID, hdr.MaxTXID)
	}
	pre := hdr.PreApplyChecksum
	return &ltx.FileInfo{
		MinTXID: min, MaxTXID: max, Size: size,
		PreApplyChecksum: pre, PostApplyChecksum: tr.PostApplyChecksum,
	}, nil
}

// readEnds reads the header and trailer of an LTX file without decoding
// the pages.
func readEnds(f *os.File) (ltx.Header, ltx.Trailer, int64, error) {
	var hdr ltx.Header
	var tr ltx.Trailer
	fi, err := f.Stat()
	if err != nil {
		return hdr, tr, 0, err
	}
	if fi.Size() < ltx.HeaderSize+ltx.TrailerSize {
		return hdr, tr, 0, fmt.Errorf("%w: file of %d bytes is too short", ltx.ErrInvalidFile, fi.Size())
	}
	b := make([]byte, ltx.HeaderSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		return hdr, tr, 0, err
	}
	if err := hdr.UnmarshalBinary(b); err != nil {
		return hdr, tr, 0, err
	}
	if _, err := f.ReadAt(b[:ltx.TrailerSize], fi.Size()-ltx.TrailerSize); err != nil {
		return hdr, tr, 0, err
	}
	if err := tr.UnmarshalBinary(b[:ltx.TrailerSize]); err != nil {
		return hdr, tr, 0, err
	}
	return hdr, tr, fi.Size(), nil
}

// list returns the TXID ranges in the folder.
func (l *localChain) list() ([][2]ltx.TXID, error) {
	ents, err := os.ReadDir(l.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var out [][2]ltx.TXID
	for _, e := range ents {
		if min, max, err := ltx.ParseFilename(e.Name()); err == nil {
			out = append(out, [2]ltx.TXID{min, max})
		}
	}
	return out, nil
}

// find returns the file that starts at txid. It tries the usual one-TXID
// name first and lists the folder only if that is missing.
func (l *localChain) find(txid ltx.TXID) (*ltx.FileInfo, error) {
	fi, err := l.stat(txid, txid)
	if !errors.Is(err, fs.ErrNotExist) {
		return fi, err
	}
	ranges, err := l.list()
	if err != nil {
		return nil, err
	}
	var best *[2]ltx.TXID
	for i, r := range ranges {
		if r[0] == txid && (best == nil || r[1] > best[1]) {
			best = &ranges[i]
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%w: %s has no file starting at TXID %s (removed by local retention before this destination held it?)", errBlocked, l.dir, txid)
	}
	return l.stat(best[0], best[1])
}

// ending returns the file that ends at txid, or an error matching
// fs.ErrNotExist.
func (l *localChain) ending(txid ltx.TXID) (*ltx.FileInfo, error) {
	fi, err := l.stat(txid, txid)
	if !errors.Is(err, fs.ErrNotExist) {
		return fi, err
	}
	ranges, err := l.list()
	if err != nil {
		return nil, err
	}
	for _, r := range ranges {
		if r[1] == txid {
			return l.stat(r[0], r[1])
		}
	}
	return nil, fmt.Errorf("%s: no file ends at TXID %s: %w", l.dir, txid, fs.ErrNotExist)
}

// head returns the newest TXID of the chain, zero if it has none.
func (l *localChain) head() (ltx.TXID, error) {
	ranges, err := l.list()
	var max ltx.TXID
	for _, r := range ranges {
		max = maxTXID(max, r[1])
	}
	return max, err
}

func maxTXID(a, b ltx.TXID) ltx.TXID { return max(a, b) }

// run returns consecutive files from start, up to head or the limits,
// at least one.
func (l *localChain) run(start, head ltx.TXID, maxFiles int, maxBytes int64) ([]*ltx.FileInfo, error) {
	var out []*ltx.FileInfo
	var bytes int64
	for t := start; t <= head && len(out) < maxFiles; {
		fi, err := l.find(t)
		if err != nil {
			if len(out) > 0 {
				break // upload what is there; the next attempt reports the gap
			}
			return nil, err
		}
		if len(out) > 0 && bytes+fi.Size > maxBytes {
			break
		}
		out = append(out, fi)
		bytes += fi.Size
		t = fi.MaxTXID + 1
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: nothing to upload from TXID %s to %s", errBlocked, start, head)
	}
	return out, nil
}

// merge compacts consecutive local files into one temporary file, opened
// and rewound. The caller must close and remove it.
func (l *localChain) merge(ctx context.Context, run []*ltx.FileInfo, tmpDir string) (*os.File, error) {
	inputs := make([]io.Reader, len(run))
	for i, fi := range run {
		f, err := os.Open(l.path(fi))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		inputs[i] = f
	}
	return compactTo(ctx, tmpDir, inputs)
}

// compactTo merges inputs into a new temporary file in dir. It is not
// synced: it only lives while it uploads.
func compactTo(ctx context.Context, dir string, inputs []io.Reader) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, ".merge-*.ltx.tmp")
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	err = ltx.NewCompactor(bw, inputs).Compact(ctx)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("merge %d LTX files: %w", len(inputs), err)
	}
	return f, nil
}

// posPath returns where the position a destination holds is kept:
// <data>/<db>/backup-<hash of the URL>.pos.
func posPath(dataDir, db string, d *Destination) string {
	sum := sha256.Sum256([]byte(d.String()))
	return filepath.Join(dataDir, filepath.FromSlash(db), "backup-"+hex.EncodeToString(sum[:6])+".pos")
}

// readPosFile reads a position file: the position on the first line, the
// URL on the second (for people).
func readPosFile(p string) (ltx.Pos, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return ltx.Pos{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return ltx.ParsePos(strings.TrimSpace(line))
}

// writePosFile replaces a position file. It does not fsync: a position
// lost in a crash only costs a listing of the destination at the next
// start, and a stale one is corrected by that listing.
func writePosFile(p string, d *Destination, pos ltx.Pos) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(pos.String()+"\n"+d.String()+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
