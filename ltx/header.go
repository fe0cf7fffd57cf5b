package ltx

import (
	"encoding/binary"
	"fmt"
)

// Header flags.
const (
	// HeaderFlagNoChecksum marks a file whose database checksums are not
	// tracked: its pre-apply and post-apply checksums are zero. The file
	// checksum is still required.
	HeaderFlagNoChecksum uint32 = 1 << 1

	// HeaderFlagMask holds every valid header flag.
	HeaderFlagMask = HeaderFlagNoChecksum
)

// Header is the first frame of an LTX file.
type Header struct {
	Version          int      // format version; always Version, implied by the magic
	Flags            uint32   // HeaderFlag* bits
	PageSize         uint32   // database page size, in bytes
	Commit           uint32   // database size after the transaction(s), in pages
	MinTXID          TXID     // first transaction in the file
	MaxTXID          TXID     // last transaction in the file
	Timestamp        int64    // time of the last transaction, in milliseconds since the Unix epoch
	PreApplyChecksum Checksum // rolling checksum of the database before MinTXID; zero for a snapshot
	WALOffset        int64    // offset of the first frame in the source WAL, in bytes; zero if from a journal
	WALSize          int64    // size of the source WAL segment, in bytes; zero if from a journal
	WALSalt1         uint32   // salt-1 of the source WAL header; zero if from a journal or compaction
	WALSalt2         uint32   // salt-2 of the source WAL header; zero if from a journal or compaction
	NodeID           uint64   // ID of the node that wrote the file; zero if unset
}

// IsSnapshot reports whether h starts at the first transaction. A snapshot
// holds every page of the database (1 to Commit, except the lock page) and
// has no pre-apply checksum.
func (h *Header) IsSnapshot() bool { return h.MinTXID == 1 }

// NoChecksum reports whether HeaderFlagNoChecksum is set.
func (h *Header) NoChecksum() bool { return h.Flags&HeaderFlagNoChecksum != 0 }

// LockPgno returns the lock page for h's page size (see LockPgno).
func (h *Header) LockPgno() uint32 { return LockPgno(h.PageSize) }

// PreApplyPos returns the position a database must be at before the file
// applies.
func (h *Header) PreApplyPos() Pos {
	return Pos{TXID: h.MinTXID - 1, PostApplyChecksum: h.PreApplyChecksum}
}

// Validate returns an error wrapping ErrInvalidHeader if h's fields are
// inconsistent. It enforces the same rules as superfly/ltx.
func (h *Header) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidHeader, fmt.Sprintf(format, args...))
	}
	switch {
	case h.Version != Version:
		return bad("version %d, want %d", h.Version, Version)
	case h.Flags&^HeaderFlagMask != 0:
		return bad("unknown flags 0x%08x", h.Flags&^HeaderFlagMask)
	case !IsValidPageSize(h.PageSize):
		return bad("page size %d is not a power of two from %d to %d", h.PageSize, MinPageSize, MaxPageSize)
	case h.MinTXID == 0:
		return bad("minimum TXID is zero")
	case h.MaxTXID == 0:
		return bad("maximum TXID is zero")
	case h.MinTXID > h.MaxTXID:
		return bad("minimum TXID %s above maximum %s", h.MinTXID, h.MaxTXID)
	case h.WALOffset < 0:
		return bad("negative WAL offset %d", h.WALOffset)
	case h.WALSize < 0:
		return bad("negative WAL size %d", h.WALSize)
	case (h.WALSalt1 != 0 || h.WALSalt2 != 0) && h.WALOffset == 0:
		return bad("WAL salts set without a WAL offset")
	case h.WALSize != 0 && h.WALOffset == 0:
		return bad("WAL size set without a WAL offset")
	}
	switch {
	case h.IsSnapshot():
		if h.PreApplyChecksum != 0 {
			return bad("snapshot has pre-apply checksum %s, want zero", h.PreApplyChecksum)
		}
	case h.NoChecksum():
		if h.PreApplyChecksum != 0 {
			return bad("pre-apply checksum %s set with the no-checksum flag", h.PreApplyChecksum)
		}
	case h.PreApplyChecksum == 0:
		return bad("pre-apply checksum missing")
	case h.PreApplyChecksum&ChecksumFlag == 0:
		return bad("pre-apply checksum %s lacks the checksum flag", h.PreApplyChecksum)
	}
	return nil
}

// MarshalBinary returns h's 100-byte encoding. It does not validate h.
func (h *Header) MarshalBinary() ([]byte, error) {
	return h.appendBinary(make([]byte, 0, HeaderSize)), nil
}

// appendBinary appends h's 100-byte encoding to b.
func (h *Header) appendBinary(b []byte) []byte {
	b = append(b, Magic...)
	b = binary.BigEndian.AppendUint32(b, h.Flags)
	b = binary.BigEndian.AppendUint32(b, h.PageSize)
	b = binary.BigEndian.AppendUint32(b, h.Commit)
	b = binary.BigEndian.AppendUint64(b, uint64(h.MinTXID))
	b = binary.BigEndian.AppendUint64(b, uint64(h.MaxTXID))
	b = binary.BigEndian.AppendUint64(b, uint64(h.Timestamp))
	b = binary.BigEndian.AppendUint64(b, uint64(h.PreApplyChecksum))
	b = binary.BigEndian.AppendUint64(b, uint64(h.WALOffset))
	b = binary.BigEndian.AppendUint64(b, uint64(h.WALSize))
	b = binary.BigEndian.AppendUint32(b, h.WALSalt1)
	b = binary.BigEndian.AppendUint32(b, h.WALSalt2)
	b = binary.BigEndian.AppendUint64(b, h.NodeID)
	var reserved [HeaderSize - 80]byte
	return append(b, reserved[:]...)
}

// UnmarshalBinary decodes h from the first 100 bytes of b. It checks the
// magic and that the reserved bytes are zero, but not the fields: call
// Validate for that.
func (h *Header) UnmarshalBinary(b []byte) error {
	if len(b) < HeaderSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrInvalidHeader, len(b), HeaderSize)
	}
	if string(b[0:4]) != Magic {
		return fmt.Errorf("%w: magic %q, want %q (not an LTX file)", ErrInvalidHeader, b[0:4], Magic)
	}
	for i := 80; i < HeaderSize; i++ {
		if b[i] != 0 {
			return fmt.Errorf("%w: reserved byte %d is 0x%02x, want zero", ErrInvalidHeader, i, b[i])
		}
	}
	*h = Header{
		Version:          Version,
		Flags:            binary.BigEndian.Uint32(b[4:]),
		PageSize:         binary.BigEndian.Uint32(b[8:]),
		Commit:           binary.BigEndian.Uint32(b[12:]),
		MinTXID:          TXID(binary.BigEndian.Uint64(b[16:])),
		MaxTXID:          TXID(binary.BigEndian.Uint64(b[24:])),
		Timestamp:        int64(binary.BigEndian.Uint64(b[32:])),
		PreApplyChecksum: Checksum(binary.BigEndian.Uint64(b[40:])),
		WALOffset:        int64(binary.BigEndian.Uint64(b[48:])),
		WALSize:          int64(binary.BigEndian.Uint64(b[56:])),
		WALSalt1:         binary.BigEndian.Uint32(b[64:]),
		WALSalt2:         binary.BigEndian.Uint32(b[68:]),
		NodeID:           binary.BigEndian.Uint64(b[72:]),
	}
	return nil
}

// Page header flags.
const (
	// PageHeaderFlagSize marks a page frame whose header is followed by a
	// four-byte compressed size and an LZ4 block. The Encoder always sets
	// it; frames without it hold an LZ4 frame (an older layout that the
	// Decoder still reads).
	PageHeaderFlagSize uint16 = 1 << 0

	// PageHeaderFlagMask holds every valid page header flag.
	PageHeaderFlagMask = PageHeaderFlagSize
)

// PageHeader is the header of one page frame. An all-zero page header ends
// the page block.
type PageHeader struct {
	Pgno  uint32 // page number, from 1
	Flags uint16 // PageHeaderFlag* bits; set by the Encoder, reported by the Decoder
}

// IsZero reports whether h is the end-of-pages marker.
func (h *PageHeader) IsZero() bool { return *h == PageHeader{} }

// Validate returns an error wrapping ErrInvalidPageHeader if h has page
// number zero or unknown flags.
func (h *PageHeader) Validate() error {
	if h.Pgno == 0 {
		return fmt.Errorf("%w: page number zero", ErrInvalidPageHeader)
	}
	if h.Flags&^PageHeaderFlagMask != 0 {
		return fmt.Errorf("%w: unknown flags 0x%04x", ErrInvalidPageHeader, h.Flags&^PageHeaderFlagMask)
	}
	return nil
}

// MarshalBinary returns h's 6-byte encoding.
func (h *PageHeader) MarshalBinary() ([]byte, error) {
	b := make([]byte, PageHeaderSize)
	h.put(b)
	return b, nil
}

func (h *PageHeader) put(b []byte) {
	binary.BigEndian.PutUint32(b[0:], h.Pgno)
	binary.BigEndian.PutUint16(b[4:], h.Flags)
}

// UnmarshalBinary decodes h from the first 6 bytes of b.
func (h *PageHeader) UnmarshalBinary(b []byte) error {
	if len(b) < PageHeaderSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrInvalidPageHeader, len(b), PageHeaderSize)
	}
	h.Pgno = binary.BigEndian.Uint32(b[0:])
	h.Flags = binary.BigEndian.Uint16(b[4:])
	return nil
}

// Trailer is the last frame of an LTX file.
type Trailer struct {
	PostApplyChecksum Checksum // rolling checksum of the database after MaxTXID
	FileChecksum      Checksum // CRC-64 ISO of the file's logical content (see package doc)
}

// Validate returns an error wrapping ErrInvalidTrailer if t's checksums do not
// suit a file with header h.
func (t *Trailer) Validate(h Header) error {
	if h.NoChecksum() {
		if t.PostApplyChecksum != 0 {
			return fmt.Errorf("%w: post-apply checksum %s set with the no-checksum flag", ErrInvalidTrailer, t.PostApplyChecksum)
		}
	} else if t.PostApplyChecksum == 0 {
		return fmt.Errorf("%w: post-apply checksum missing", ErrInvalidTrailer)
	} else if t.PostApplyChecksum&ChecksumFlag == 0 {
		return fmt.Errorf("%w: post-apply checksum %s lacks the checksum flag", ErrInvalidTrailer, t.PostApplyChecksum)
	} else if h.Commit == 0 && t.PostApplyChecksum != ChecksumFlag {
		return fmt.Errorf("%w: post-apply checksum %s of an empty database, want %s", ErrInvalidTrailer, t.PostApplyChecksum, ChecksumFlag)
	}
	if t.FileChecksum == 0 {
		return fmt.Errorf("%w: file checksum missing", ErrInvalidTrailer)
	} else if t.FileChecksum&ChecksumFlag == 0 {
		return fmt.Errorf("%w: file checksum %s lacks the checksum flag", ErrInvalidTrailer, t.FileChecksum)
	}
	return nil
}

// MarshalBinary returns t's 16-byte encoding.
func (t *Trailer) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, TrailerSize)
	b = binary.BigEndian.AppendUint64(b, uint64(t.PostApplyChecksum))
	b = binary.BigEndian.AppendUint64(b, uint64(t.FileChecksum))
	return b, nil
}

// UnmarshalBinary decodes t from the first 16 bytes of b.
func (t *Trailer) UnmarshalBinary(b []byte) error {
	if len(b) < TrailerSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrInvalidTrailer, len(b), TrailerSize)
	}
	t.PostApplyChecksum = Checksum(binary.BigEndian.Uint64(b[0:]))
	t.FileChecksum = Checksum(binary.BigEndian.Uint64(b[8:]))
	return nil
}
