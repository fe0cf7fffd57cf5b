// Package ltxtest simulates a database that commits transactions, for the
// tests of package replicate: each commit yields the LTX file pagefs would
// capture, with exact checksums, and the image the database holds after it.
//
// # Basics
//
// NewDB returns an empty database of a page size. Commit changes some pages
// (or grows or shrinks the database) and returns the encoded LTX file;
// Image returns the current bytes; WriteChain writes files into a pagefs
// data directory's level-0 folder.
//
// # Caveats
//
// Page contents are random, so files compress poorly: sizes are close to
// worst case. Not safe for concurrent use.
package ltxtest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/pagefs/pagefs/ltx"
)

// DB is a simulated database.
type DB struct {
	PageSize uint32
	Pages    [][]byte // page i+1; nil for the lock page
	TXID     ltx.TXID
	Checksum ltx.Checksum
	Now      func() time.Time // clock for header timestamps; nil means time.Now

	rng *rand.Rand
}

// NewDB returns an empty database whose pages are filled from seed.
func NewDB(pageSize uint32, seed uint64) *DB {
	return &DB{PageSize: pageSize, Checksum: ltx.ChecksumFlag, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Pos returns the database's position.
func (d *DB) Pos() ltx.Pos { return ltx.Pos{TXID: d.TXID, PostApplyChecksum: d.Checksum} }

func (d *DB) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Commit applies a transaction that rewrites the given pages (growing the
// database if a page is beyond its end) and sets the size to commit pages
// if commit is not zero. It returns the LTX file. The first commit of a
// database is a snapshot of every page.
func (d *DB) Commit(commit uint32, pgnos ...uint32) []byte {
	lock := ltx.LockPgno(d.PageSize)
	size := uint32(len(d.Pages))
	for _, p := range pgnos {
		size = max(size, p)
	}
	if commit != 0 {
		size = commit
	}
	changed := map[uint32]bool{}
	for _, p := range pgnos {
		if p <= size && p != lock {
			changed[p] = true
		}
	}
	for p := uint32(len(d.Pages)) + 1; p <= size; p++ {
		if p != lock {
			changed[p] = true
		}
	}
	pre := d.Checksum
	for p := size + 1; p <= uint32(len(d.Pages)); p++ {
		if d.Pages[p-1] != nil {
			d.Checksum = d.Checksum.Add(ltx.ChecksumPage(p, d.Pages[p-1]))
		}
	}
	if size < uint32(len(d.Pages)) {
		d.Pages = d.Pages[:size]
	}
	for uint32(len(d.Pages)) < size {
		d.Pages = append(d.Pages, nil)
	}
	for p := range changed {
		if old := d.Pages[p-1]; old != nil {
			d.Checksum = d.Checksum.Add(ltx.ChecksumPage(p, old))
		}
		buf := make([]byte, d.PageSize)
		for i := 0; i < len(buf); i += 8 {
			v := d.rng.Uint64()
			for j := 0; j < 8 && i+j < len(buf); j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		// Make pages partly compressible, like real ones.
		clear(buf[len(buf)/2:])
		d.Pages[p-1] = buf
		d.Checksum = d.Checksum.Add(ltx.ChecksumPage(p, buf))
	}
	d.TXID++
	hdr := ltx.Header{
		Version: ltx.Version, PageSize: d.PageSize, Commit: size,
		MinTXID: d.TXID, MaxTXID: d.TXID, Timestamp: d.now().UnixMilli(), PreApplyChecksum: pre,
	}
	list := make([]uint32, 0, len(changed))
	if d.TXID == 1 {
		hdr.PreApplyChecksum = 0
		for p := uint32(1); p <= size; p++ {
			if p != lock {
				list = append(list, p)
			}
		}
	} else {
		for p := range changed {
			list = append(list, p)
		}
		slices.Sort(list)
	}
	return d.encode(hdr, list)
}

// Snapshot returns a snapshot of the database at its current TXID.
func (d *DB) Snapshot() []byte {
	lock := ltx.LockPgno(d.PageSize)
	var list []uint32
	for p := uint32(1); p <= uint32(len(d.Pages)); p++ {
		if p != lock {
			list = append(list, p)
		}
	}
	return d.encode(ltx.Header{
		Version: ltx.Version, PageSize: d.PageSize, Commit: uint32(len(d.Pages)),
		MinTXID: 1, MaxTXID: d.TXID, Timestamp: d.now().UnixMilli(),
	}, list)
}

func (d *DB) encode(hdr ltx.Header, pgnos []uint32) []byte {
	var buf bytes.Buffer
	enc := ltx.NewEncoder(&buf)
	if err := enc.EncodeHeader(hdr); err != nil {
		panic(fmt.Sprintf("ltxtest: %v", err))
	}
	for _, p := range pgnos {
		if err := enc.EncodePage(ltx.PageHeader{Pgno: p}, d.Pages[p-1]); err != nil {
			panic(fmt.Sprintf("ltxtest: page %d: %v", p, err))
		}
	}
	enc.SetPostApplyChecksum(d.Checksum)
	if err := enc.Close(); err != nil {
		panic(fmt.Sprintf("ltxtest: %v", err))
	}
	return buf.Bytes()
}

// Image returns the database file's bytes: every page, the lock page as
// zeros.
func (d *DB) Image() []byte {
	out := make([]byte, 0, int(d.PageSize)*len(d.Pages))
	for _, p := range d.Pages {
		if p == nil {
			p = make([]byte, d.PageSize)
		}
		out = append(out, p...)
	}
	return out
}

// RandomCommit rewrites n random pages of a database of at least size
// pages and returns the file.
func (d *DB) RandomCommit(size uint32, n int) []byte {
	if uint32(len(d.Pages)) < size || d.TXID == 0 {
		return d.Commit(max(size, uint32(len(d.Pages))))
	}
	pgnos := make([]uint32, n)
	for i := range pgnos {
		pgnos[i] = 1 + d.rng.Uint32N(uint32(len(d.Pages)))
	}
	return d.Commit(0, pgnos...)
}

// WriteFile writes an LTX file into dir under its name and returns the path.
func WriteFile(dir string, b []byte) (string, error) {
	var hdr ltx.Header
	if err := hdr.UnmarshalBinary(b); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, ltx.FormatFilename(hdr.MinTXID, hdr.MaxTXID))
	return p, os.WriteFile(p, b, 0o644)
}

// Header decodes the header of an LTX file.
func Header(b []byte) ltx.Header {
	var hdr ltx.Header
	_ = hdr.UnmarshalBinary(b)
	return hdr
}
