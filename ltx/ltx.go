package ltx

import (
	"errors"
	"fmt"
	"strconv"
)

// Magic is the first four bytes of every LTX file.
const Magic = "LTX1"

// Version is the LTX format version this package reads and writes. Version 3
// stores each page as an LZ4 block behind a six-byte page header and a
// four-byte compressed size. The magic does not change between versions, so
// the version is implied, not stored.
const Version = 3

// Sizes of the fixed-width parts of an LTX file, in bytes.
const (
	HeaderSize     = 100 // header frame, including 20 reserved bytes
	PageHeaderSize = 6   // page number and page flags
	PageSizeSize   = 4   // compressed size that follows a page header
	TrailerSize    = 16  // post-apply checksum and file checksum
	ChecksumSize   = 8   // one checksum field
)

// Page size limits, as in SQLite.
const (
	MinPageSize = 512
	MaxPageSize = 65536
)

// PendingByte is the offset of SQLite's lock byte range. The page that holds
// it (see LockPgno) is never written by SQLite and never stored in LTX.
const PendingByte = 0x40000000

// Errors returned by this package. Decoding errors for a malformed file are
// *FormatError values that match ErrInvalidFile and, where one applies, a
// more specific sentinel below, with errors.Is.
var (
	// ErrInvalidFile is matched by every error that reports a malformed or
	// truncated LTX file.
	ErrInvalidFile = errors.New("invalid LTX file")

	// ErrEncoderClosed is returned by an Encoder method called after Close.
	ErrEncoderClosed = errors.New("ltx encoder closed")

	// ErrEncoderAborted is returned by an Encoder after a write to its
	// underlying writer failed: the output is incomplete and the Encoder
	// refuses to finish it.
	ErrEncoderAborted = errors.New("ltx encoder aborted")

	// ErrDecoderClosed is returned by DecodePage after Close.
	ErrDecoderClosed = errors.New("ltx decoder closed")

	// ErrInvalidHeader is returned when a header's fields are inconsistent.
	ErrInvalidHeader = errors.New("invalid header")

	// ErrInvalidPageHeader is returned for a page header with page number
	// zero or unknown flags.
	ErrInvalidPageHeader = errors.New("invalid page header")

	// ErrInvalidTrailer is returned when a trailer's checksums are missing
	// or malformed.
	ErrInvalidTrailer = errors.New("invalid trailer")

	// ErrOutOfOrderPages is returned when page numbers are not strictly
	// ascending.
	ErrOutOfOrderPages = errors.New("out-of-order page numbers")

	// ErrPageOutOfRange is returned for a page number above the header's
	// commit size.
	ErrPageOutOfRange = errors.New("page number beyond commit size")

	// ErrLockPage is returned for the lock page (see LockPgno), which LTX
	// never stores.
	ErrLockPage = errors.New("lock page stored")

	// ErrSnapshotIncomplete is returned when a snapshot does not hold every
	// page from 1 to its commit size, except the lock page.
	ErrSnapshotIncomplete = errors.New("snapshot missing pages")

	// ErrPageSize is returned when a page buffer's length is not the
	// header's page size.
	ErrPageSize = errors.New("page buffer size mismatch")

	// ErrBadCompression is returned for a page whose LZ4 data does not
	// decompress to exactly one page.
	ErrBadCompression = errors.New("bad compressed page data")

	// ErrPageIndexMismatch is returned when the page index does not describe
	// exactly the page frames in the file.
	ErrPageIndexMismatch = errors.New("page index mismatch")

	// ErrChecksumMismatch is returned when the file checksum in the trailer
	// does not match the file's contents.
	ErrChecksumMismatch = errors.New("file checksum mismatch")

	// ErrPostApplyChecksumMismatch is returned when a snapshot's post-apply
	// checksum does not match the checksum of its pages.
	ErrPostApplyChecksumMismatch = errors.New("post-apply checksum mismatch")

	// ErrTrailingData is returned when bytes follow the trailer.
	ErrTrailingData = errors.New("data after trailer")
)

// FormatError reports a malformed LTX file: what is wrong and where. It
// matches ErrInvalidFile and its Err with errors.Is.
type FormatError struct {
	Offset int64  // byte offset in the file where the problem was found
	Pgno   uint32 // page number of the frame being decoded; zero if none
	Err    error  // what is wrong
}

// Error returns "what is wrong (at offset X)" or "... (at offset X, page N)".
func (e *FormatError) Error() string {
	if e.Pgno != 0 {
		return fmt.Sprintf("%v (at offset %d, page %d)", e.Err, e.Offset, e.Pgno)
	}
	return fmt.Sprintf("%v (at offset %d)", e.Err, e.Offset)
}

// Unwrap returns ErrInvalidFile and Err, so errors.Is matches either.
func (e *FormatError) Unwrap() []error { return []error{ErrInvalidFile, e.Err} }

// TXID is a transaction ID. The first transaction of a database is 1; zero
// means "none".
type TXID uint64

// ParseTXID parses a TXID written as 16 lowercase or uppercase hex digits.
func ParseTXID(s string) (TXID, error) {
	v, err := parseHex16(s)
	if err != nil {
		return 0, fmt.Errorf("invalid transaction id %q: %w", s, err)
	}
	return TXID(v), nil
}

// String returns t as 16 lowercase hex digits.
func (t TXID) String() string { return hex16(uint64(t)) }

// Pos is a database position: the last applied transaction and the rolling
// checksum of the database after it.
type Pos struct {
	TXID              TXID
	PostApplyChecksum Checksum
}

// ParsePos parses the "TXID/CHECKSUM" form returned by Pos.String.
func ParsePos(s string) (Pos, error) {
	if len(s) != 33 || s[16] != '/' {
		return Pos{}, fmt.Errorf("invalid position %q: want 16 hex digits, '/', 16 hex digits", s)
	}
	txid, err := ParseTXID(s[:16])
	if err != nil {
		return Pos{}, err
	}
	chksum, err := ParseChecksum(s[17:])
	if err != nil {
		return Pos{}, err
	}
	return Pos{TXID: txid, PostApplyChecksum: chksum}, nil
}

// String returns p as "TXID/CHECKSUM", each 16 hex digits.
func (p Pos) String() string { return p.TXID.String() + "/" + p.PostApplyChecksum.String() }

// IsZero reports whether p is the zero position (no transaction applied).
func (p Pos) IsZero() bool { return p == Pos{} }

// IsValidPageSize reports whether sz is a power of two from 512 to 65536.
func IsValidPageSize(sz uint32) bool {
	return sz >= MinPageSize && sz <= MaxPageSize && sz&(sz-1) == 0
}

// LockPgno returns the page that holds SQLite's pending byte (offset 1 GiB)
// for pageSize. SQLite never writes it; it is excluded from LTX files and from
// the rolling checksum.
func LockPgno(pageSize uint32) uint32 {
	if pageSize == 0 {
		return 0
	}
	return PendingByte/pageSize + 1
}

func hex16(v uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

func parseHex16(s string) (uint64, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("length %d, want 16", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return 0, fmt.Errorf("not a hex digit: %q", c)
		}
	}
	return strconv.ParseUint(s, 16, 64)
}
