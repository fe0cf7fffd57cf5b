package mount

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// This file knows SQLite's on-disk formats: the database header, the WAL
// header and frame header with their checksum chain, the wal-index (-shm)
// header and the rollback journal header. Each is described in SQLite's
// "Database File Format" and "WAL-mode File Format" documents.

// sqliteMagic opens every SQLite database file.
const sqliteMagic = "SQLite format 3\x00"

// dbHeaderSize is the size of the database header at the start of page 1.
const dbHeaderSize = 100

// isDatabaseHeader reports whether b starts with SQLite's file magic.
func isDatabaseHeader(b []byte) bool {
	return len(b) >= len(sqliteMagic) && string(b[:len(sqliteMagic)]) == sqliteMagic
}

// dbHeaderPageSize decodes the page size stored at offset 16 of the database
// header; the value 1 means 65536. It returns 0 if the value is not a legal
// page size.
func dbHeaderPageSize(b []byte) uint32 {
	if len(b) < 18 {
		return 0
	}
	v := uint32(binary.BigEndian.Uint16(b[16:18]))
	if v == 1 {
		v = 65536
	}
	if !validPageSize(v) {
		return 0
	}
	return v
}

// dbHeaderCommit returns the database size in pages: the in-header size at
// offset 28 when it is valid (its version-valid-for number at 92 equals the
// change counter at 24, as SQLite requires), else the file size. SQLite
// may truncate the file only after a commit is final, so the header is the
// truth about where the database ends.
func dbHeaderCommit(b []byte, fileSize int64, pageSize uint32) uint32 {
	if len(b) >= dbHeaderSize {
		n := binary.BigEndian.Uint32(b[28:32])
		if n > 0 && binary.BigEndian.Uint32(b[24:28]) == binary.BigEndian.Uint32(b[92:96]) {
			return n
		}
	}
	return uint32(fileSize / int64(pageSize))
}

func validPageSize(v uint32) bool {
	return v >= 512 && v <= 65536 && v&(v-1) == 0
}

// WAL file layout.
const (
	walHeaderSize      = 32
	walFrameHeaderSize = 24
	walMagicLE         = 0x377f0682 // checksums computed over little-endian words
	walMagicBE         = 0x377f0683 // checksums computed over big-endian words
)

// walHeader is the 32-byte header of a -wal file.
type walHeader struct {
	bigEndianCksum bool
	pageSize       uint32
	ckptSeq        uint32
	salt1, salt2   uint32
	cksum1, cksum2 uint32
}

var errWALHeader = errors.New("invalid WAL header")

// parseWALHeader decodes and checks a WAL header, including its checksum.
func parseWALHeader(b []byte) (walHeader, error) {
	if len(b) < walHeaderSize {
		return walHeader{}, errWALHeader
	}
	var h walHeader
	switch binary.BigEndian.Uint32(b[0:4]) {
	case walMagicLE:
	case walMagicBE:
		h.bigEndianCksum = true
	default:
		return walHeader{}, errWALHeader
	}
	h.pageSize = binary.BigEndian.Uint32(b[8:12])
	if h.pageSize == 1 {
		h.pageSize = 65536
	}
	if !validPageSize(h.pageSize) {
		return walHeader{}, fmt.Errorf("%w: page size %d", errWALHeader, h.pageSize)
	}
	h.ckptSeq = binary.BigEndian.Uint32(b[12:16])
	h.salt1 = binary.BigEndian.Uint32(b[16:20])
	h.salt2 = binary.BigEndian.Uint32(b[20:24])
	h.cksum1 = binary.BigEndian.Uint32(b[24:28])
	h.cksum2 = binary.BigEndian.Uint32(b[28:32])
	s1, s2 := walChecksum(h.bigEndianCksum, 0, 0, b[:24])
	if s1 != h.cksum1 || s2 != h.cksum2 {
		return walHeader{}, fmt.Errorf("%w: checksum mismatch", errWALHeader)
	}
	return h, nil
}

// walFrameHeader is the 24-byte header before each page in the WAL.
type walFrameHeader struct {
	pgno           uint32
	commit         uint32 // database size in pages after a commit frame; 0 otherwise
	salt1, salt2   uint32
	cksum1, cksum2 uint32
}

func parseWALFrameHeader(b []byte) walFrameHeader {
	return walFrameHeader{
		pgno:   binary.BigEndian.Uint32(b[0:4]),
		commit: binary.BigEndian.Uint32(b[4:8]),
		salt1:  binary.BigEndian.Uint32(b[8:12]),
		salt2:  binary.BigEndian.Uint32(b[12:16]),
		cksum1: binary.BigEndian.Uint32(b[16:20]),
		cksum2: binary.BigEndian.Uint32(b[20:24]),
	}
}

// walChecksum continues SQLite's WAL checksum (s1, s2) over b, whose length
// must be a multiple of 8.
func walChecksum(bigEndian bool, s1, s2 uint32, b []byte) (uint32, uint32) {
	if bigEndian {
		for i := 0; i+8 <= len(b); i += 8 {
			s1 += binary.BigEndian.Uint32(b[i:]) + s2
			s2 += binary.BigEndian.Uint32(b[i+4:]) + s1
		}
		return s1, s2
	}
	for i := 0; i+8 <= len(b); i += 8 {
		s1 += binary.LittleEndian.Uint32(b[i:]) + s2
		s2 += binary.LittleEndian.Uint32(b[i+4:]) + s1
	}
	return s1, s2
}

// shmHeaderSize is the size of the two copies of the wal-index header at the
// start of the -shm file that pagefs compares to notice new commits.
const shmHeaderSize = 96

// shmHeader is what pagefs reads from the wal-index header: how many WAL
// frames SQLite's connections consider committed, and of which WAL
// generation.
type shmHeader struct {
	mxFrame uint32
	salt    [8]byte // the WAL header's salt bytes, as SQLite copies them
}

// parseSHMHeader decodes the wal-index header. SQLite writes the second
// copy, then the first; a reader that finds them equal and the checksum
// valid has a consistent header. The header is in the machine's byte order.
func parseSHMHeader(b []byte) (shmHeader, bool) {
	if len(b) < shmHeaderSize || string(b[:48]) != string(b[48:96]) || b[12] != 1 {
		return shmHeader{}, false
	}
	s1, s2 := walChecksum(false, 0, 0, b[:40])
	if s1 != binary.LittleEndian.Uint32(b[40:44]) || s2 != binary.LittleEndian.Uint32(b[44:48]) {
		return shmHeader{}, false
	}
	h := shmHeader{mxFrame: binary.LittleEndian.Uint32(b[16:20])}
	copy(h.salt[:], b[32:40])
	return h, true
}

// Rollback journal layout.
var journalMagic = []byte{0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7}

// journalHeader is the header that opens each segment of a rollback journal.
type journalHeader struct {
	nRec       uint32 // records in this segment; 0xffffffff or 0 means "compute from size"
	nonce      uint32 // checksum seed
	dbSize     uint32 // database size in pages before the transaction
	sectorSize uint32 // header occupies this many bytes
	pageSize   uint32
}

// isHotJournalHeader reports whether b opens with the journal magic, which
// SQLite writes when a transaction starts and erases (or deletes, or
// truncates) when it commits.
func isHotJournalHeader(b []byte) bool {
	if len(b) < len(journalMagic) {
		return false
	}
	for i, c := range journalMagic {
		if b[i] != c {
			return false
		}
	}
	return true
}

func parseJournalHeader(b []byte) (journalHeader, bool) {
	if len(b) < 28 || !isHotJournalHeader(b) {
		return journalHeader{}, false
	}
	h := journalHeader{
		nRec:       binary.BigEndian.Uint32(b[8:12]),
		nonce:      binary.BigEndian.Uint32(b[12:16]),
		dbSize:     binary.BigEndian.Uint32(b[16:20]),
		sectorSize: binary.BigEndian.Uint32(b[20:24]),
		pageSize:   binary.BigEndian.Uint32(b[24:28]),
	}
	if !validPageSize(h.pageSize) || h.sectorSize < 32 || h.sectorSize > 65536 || h.sectorSize&(h.sectorSize-1) != 0 {
		return journalHeader{}, false
	}
	return h, true
}

// journalRecordChecksum is SQLite's checksum of a journal page record: the
// nonce plus every 200th byte counting back from the end of the page.
func journalRecordChecksum(nonce uint32, page []byte) uint32 {
	sum := nonce
	for i := len(page) - 200; i > 0; i -= 200 {
		sum += uint32(page[i])
	}
	return sum
}
