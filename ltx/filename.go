package ltx

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// FormatFilename returns the name of the LTX file holding transactions min
// through max: "%016x-%016x.ltx".
func FormatFilename(min, max TXID) string {
	return min.String() + "-" + max.String() + ".ltx"
}

// ParseFilename parses a name made by FormatFilename (lowercase hex only) and
// returns its TXID range. It does not check that min <= max.
func ParseFilename(name string) (min, max TXID, err error) {
	base, ok := strings.CutSuffix(name, ".ltx")
	if !ok || len(base) != 33 || base[16] != '-' || !isLowerHex(base[:16]) || !isLowerHex(base[17:]) {
		return 0, 0, fmt.Errorf("invalid LTX file name %q: want <16 hex digits>-<16 hex digits>.ltx", name)
	}
	a, _ := parseHex16(base[:16])
	b, _ := parseHex16(base[17:])
	return TXID(a), TXID(b), nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// FileInfo describes one stored LTX file.
type FileInfo struct {
	Level             int       // compaction level; 0 holds one file per commit
	MinTXID           TXID      // first transaction in the file
	MaxTXID           TXID      // last transaction in the file
	PreApplyChecksum  Checksum  // database checksum before MinTXID
	PostApplyChecksum Checksum  // database checksum after MaxTXID
	Size              int64     // file size, in bytes
	CreatedAt         time.Time // when the file was written; zero if unknown
}

// PreApplyPos returns the position a database must be at before the file
// applies.
func (fi *FileInfo) PreApplyPos() Pos {
	return Pos{TXID: fi.MinTXID - 1, PostApplyChecksum: fi.PreApplyChecksum}
}

// Pos returns the position of a database after the file applies.
func (fi *FileInfo) Pos() Pos {
	return Pos{TXID: fi.MaxTXID, PostApplyChecksum: fi.PostApplyChecksum}
}

// FileIterator iterates over LTX file descriptions. Call Next before each
// Item; when Next returns false, check Err. The caller must call Close.
type FileIterator interface {
	// Next advances to the next file and reports whether there is one.
	Next() bool
	// Item returns the current file; nil before the first Next or after
	// the last.
	Item() *FileInfo
	// Err returns the error that stopped iteration, if any.
	Err() error
	// Close releases the iterator's resources.
	Close() error
}

// NewFileInfoSliceIterator returns a FileIterator over a, which it sorts in
// place by level, then MinTXID, then MaxTXID. The caller must not modify a
// while iterating.
func NewFileInfoSliceIterator(a []*FileInfo) FileIterator {
	slices.SortFunc(a, func(x, y *FileInfo) int {
		return cmp.Or(cmp.Compare(x.Level, y.Level), cmp.Compare(x.MinTXID, y.MinTXID), cmp.Compare(x.MaxTXID, y.MaxTXID))
	})
	return &sliceIterator{a: a, i: -1}
}

type sliceIterator struct {
	a []*FileInfo
	i int
}

func (it *sliceIterator) Next() bool {
	if it.i < len(it.a) {
		it.i++
	}
	return it.i < len(it.a)
}

func (it *sliceIterator) Item() *FileInfo {
	if it.i < 0 || it.i >= len(it.a) {
		return nil
	}
	return it.a[it.i]
}

func (it *sliceIterator) Err() error   { return nil }
func (it *sliceIterator) Close() error { return nil }

// SliceFileIterator drains itr into a slice and closes it.
func SliceFileIterator(itr FileIterator) ([]*FileInfo, error) {
	var a []*FileInfo
	for itr.Next() {
		a = append(a, itr.Item())
	}
	err := itr.Err()
	if cerr := itr.Close(); err == nil {
		err = cerr
	}
	return a, err
}
