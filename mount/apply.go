package mount

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/pagefs/pagefs/ltx"
)

// ApplyLTX applies one LTX file, read from r, to the database image in f:
// every page is written in place and the file is truncated to the commit
// size. It verifies the file's checksums as it decodes and, when prev is not
// zero, that the file continues from it. It returns the position after the
// file. The caller owns syncing f.
func ApplyLTX(f *os.File, r io.Reader, prev ltx.Pos) (ltx.Header, ltx.Pos, error) {
	dec := ltx.NewDecoder(r)
	if err := dec.DecodeHeader(); err != nil {
		return ltx.Header{}, ltx.Pos{}, err
	}
	hdr := dec.Header()
	if !prev.IsZero() && !hdr.IsSnapshot() {
		if hdr.MinTXID != prev.TXID+1 {
			return hdr, ltx.Pos{}, fmt.Errorf("LTX file starts at TXID %s, expected %s", hdr.MinTXID, prev.TXID+1)
		}
		if hdr.PreApplyChecksum != prev.PostApplyChecksum {
			return hdr, ltx.Pos{}, fmt.Errorf("LTX file TXID %s: pre-apply checksum %s does not match %s", hdr.MinTXID, hdr.PreApplyChecksum, prev.PostApplyChecksum)
		}
	}
	buf := make([]byte, hdr.PageSize)
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, buf); err == io.EOF {
			break
		} else if err != nil {
			return hdr, ltx.Pos{}, err
		}
		if _, err := f.WriteAt(buf, int64(ph.Pgno-1)*int64(hdr.PageSize)); err != nil {
			return hdr, ltx.Pos{}, err
		}
	}
	if err := dec.Close(); err != nil {
		return hdr, ltx.Pos{}, err
	}
	if err := f.Truncate(int64(hdr.Commit) * int64(hdr.PageSize)); err != nil {
		return hdr, ltx.Pos{}, err
	}
	return hdr, ltx.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: dec.Trailer().PostApplyChecksum}, nil
}

// ChecksumFile computes the rolling checksum of a database image: the XOR
// of every page's checksum but the lock page's, with the checksum flag.
func ChecksumFile(f *os.File, pageSize uint32) (ltx.Checksum, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	n := uint32(fi.Size() / int64(pageSize))
	buf := make([]byte, pageSize)
	lock := ltx.LockPgno(pageSize)
	chk := ltx.ChecksumFlag
	for pgno := uint32(1); pgno <= n; pgno++ {
		if pgno == lock {
			continue
		}
		if _, err := f.ReadAt(buf, int64(pgno-1)*int64(pageSize)); err != nil {
			return 0, err
		}
		chk ^= ltx.ChecksumPage(pgno, buf)
	}
	return ltx.ChecksumFlag | chk, nil
}

// ReplayChain applies every level-0 LTX file in dir, in TXID order, to a
// new image at out, checking that the chain has no gap and that each file's
// post-apply checksum is the checksum of the image it produces. It returns
// the final position. It is how tests and `pagefs verify` prove a chain
// equals a database. Checking every file costs a full read of the image per
// file; with checkEach false only the final image is checked.
func ReplayChain(dir, out string, checkEach bool) (ltx.Pos, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ltx.Pos{}, err
	}
	type file struct {
		name     string
		min, max ltx.TXID
	}
	var files []file
	for _, e := range ents {
		if min, max, err := ltx.ParseFilename(e.Name()); err == nil {
			files = append(files, file{e.Name(), min, max})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].min < files[j].min })
	if len(files) == 0 {
		return ltx.Pos{}, errors.New("no LTX files")
	}
	if files[0].min != 1 {
		return ltx.Pos{}, fmt.Errorf("chain starts at TXID %s, not at a snapshot", files[0].min)
	}
	f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return ltx.Pos{}, err
	}
	defer f.Close()
	var pos ltx.Pos
	for _, fl := range files {
		r, err := os.Open(filepath.Join(dir, fl.name))
		if err != nil {
			return pos, err
		}
		hdr, next, err := ApplyLTX(f, r, pos)
		r.Close()
		if err != nil {
			return pos, fmt.Errorf("%s: %w", fl.name, err)
		}
		pos = next
		if checkEach || fl.name == files[len(files)-1].name {
			got, err := ChecksumFile(f, hdr.PageSize)
			if err != nil {
				return pos, err
			}
			if got != next.PostApplyChecksum {
				return pos, fmt.Errorf("%s: image checksum %s after apply, file says %s", fl.name, got, next.PostApplyChecksum)
			}
		}
	}
	return pos, nil
}
