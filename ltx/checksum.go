package ltx

import (
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"sync"
)

// Checksum is a CRC-64 (ISO polynomial) checksum with ChecksumFlag set, so a
// computed checksum is never zero. Zero means "no checksum".
type Checksum uint64

// ChecksumFlag is set on every computed checksum.
const ChecksumFlag Checksum = 1 << 63

// isoTable is the CRC-64 ISO table shared by every checksum in the package.
var isoTable = crc64.MakeTable(crc64.ISO)

// ParseChecksum parses a checksum written as 16 hex digits.
func ParseChecksum(s string) (Checksum, error) {
	v, err := parseHex16(s)
	if err != nil {
		return 0, fmt.Errorf("invalid checksum %q: %w", s, err)
	}
	return Checksum(v), nil
}

// String returns c as 16 lowercase hex digits.
func (c Checksum) String() string { return hex16(uint64(c)) }

// NewHasher returns a CRC-64 ISO hash. ChecksumPageWith does not allocate when
// given a hash returned by NewHasher.
func NewHasher() hash.Hash64 { return &hasher{} }

// hasher is a CRC-64 ISO hash.Hash64 whose state ChecksumPageWith can update
// without going through an interface (which would make its input escape).
type hasher struct{ crc uint64 }

func (h *hasher) Write(p []byte) (int, error) {
	h.crc = crc64.Update(h.crc, isoTable, p)
	return len(p), nil
}
func (h *hasher) Sum64() uint64 { return h.crc }
func (h *hasher) Sum(b []byte) []byte {
	return binary.BigEndian.AppendUint64(b, h.crc)
}
func (h *hasher) Reset()         { h.crc = 0 }
func (h *hasher) Size() int      { return crc64.Size }
func (h *hasher) BlockSize() int { return 1 }

// ChecksumPage returns the checksum of page pgno holding data: CRC-64 ISO over
// pgno as a big-endian uint32 followed by data, with ChecksumFlag set.
func ChecksumPage(pgno uint32, data []byte) Checksum {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], pgno)
	crc := crc64.Update(0, isoTable, b[:])
	return ChecksumFlag | Checksum(crc64.Update(crc, isoTable, data))
}

// ChecksumPageWith is ChecksumPage computed with h, which must be a CRC-64
// ISO hash (from NewHasher, or crc64.New with the ISO table) that the caller
// does not use concurrently. It resets h first and does not allocate.
func ChecksumPageWith(h hash.Hash64, pgno uint32, data []byte) Checksum {
	if hh, ok := h.(*hasher); ok {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], pgno)
		hh.crc = crc64.Update(0, isoTable, b[:])
		hh.crc = crc64.Update(hh.crc, isoTable, data)
		return ChecksumFlag | Checksum(hh.crc)
	}
	// Bytes passed through an interface escape; borrow them from a pool.
	b := pgnoBufs.Get().(*[4]byte)
	binary.BigEndian.PutUint32(b[:], pgno)
	h.Reset()
	_, _ = h.Write(b[:])
	_, _ = h.Write(data)
	pgnoBufs.Put(b)
	return ChecksumFlag | Checksum(h.Sum64())
}

var pgnoBufs = sync.Pool{New: func() any { return new([4]byte) }}

// Add returns the rolling database checksum c with a page checksum folded in
// (or folded out: the operation is its own inverse). The checksum of a
// database is ChecksumFlag folded with ChecksumPage of every page except the
// lock page; an empty database has checksum ChecksumFlag.
func (c Checksum) Add(page Checksum) Checksum { return ChecksumFlag | (c ^ page) }

// ChecksumDatabase reads a whole database image of pageSize-byte pages from r
// and returns its rolling checksum. A final partial page is an error.
func ChecksumDatabase(r io.Reader, pageSize uint32) (Checksum, error) {
	if !IsValidPageSize(pageSize) {
		return 0, fmt.Errorf("%w: page size %d", ErrInvalidHeader, pageSize)
	}
	data := make([]byte, pageSize)
	lockPgno := LockPgno(pageSize)
	chksum := ChecksumFlag
	for pgno := uint32(1); ; pgno++ {
		if _, err := io.ReadFull(r, data); err == io.EOF {
			return chksum, nil
		} else if err != nil {
			return 0, fmt.Errorf("read page %d: %w", pgno, err)
		}
		if pgno != lockPgno {
			chksum = chksum.Add(ChecksumPage(pgno, data))
		}
	}
}
