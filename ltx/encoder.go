package ltx

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/pierrec/lz4/v4"
)

// encoder states, in call order.
type encState uint8

const (
	encHeader  encState = iota // waiting for EncodeHeader
	encPage                    // accepting EncodePage or Close
	encClosed                  // Close succeeded
	encAborted                 // a write failed; the output is incomplete
)

// frameHeaderSize is a page header plus its compressed size.
const frameHeaderSize = PageHeaderSize + PageSizeSize

// indexFlushSize is how many index bytes Close buffers before a write.
const indexFlushSize = 32 << 10

// Encoder writes one LTX file to an io.Writer, streaming: it keeps the page
// index (8 bytes per page) but no page data.
//
// Call EncodeHeader, then EncodePage once per page in ascending page order,
// then optionally SetPostApplyChecksum, then Close, which writes the page
// index and trailer. The caller must check every error: after a failed write
// to the underlying writer the Encoder is aborted and the output is useless.
// An Encoder is not safe for concurrent use. Reset reuses it for another file
// without reallocating its buffers.
type Encoder struct {
	w       io.Writer
	state   encState
	header  Header
	trailer Trailer
	hash    hasher // file checksum
	n       int64  // bytes written

	lockPgno uint32
	prevPgno uint32
	index    []indexEntry
	postSet  bool     // SetPostApplyChecksum was called
	dbSum    Checksum // rolling checksum of a snapshot's pages

	comp *lz4.Compressor
	buf  []byte // frame header + compressed page; index bytes during Close
}

// indexEntry is one page of the page index. Frames are contiguous, so
// offsets are recomputed at Close from the sizes.
type indexEntry struct {
	pgno uint32
	size uint32 // frame size: header, compressed size and payload
}

// NewEncoder returns an Encoder that writes to w. The caller should give it a
// buffered writer: the Encoder writes once per page.
func NewEncoder(w io.Writer) *Encoder {
	return &Encoder{w: w}
}

// Reset discards the Encoder's state, keeping its buffers, and makes it write
// a new file to w.
func (e *Encoder) Reset(w io.Writer) {
	*e = Encoder{w: w, index: e.index[:0], comp: e.comp, buf: e.buf[:0]}
}

// N returns the number of bytes written so far.
func (e *Encoder) N() int64 { return e.n }

// PageN returns the number of pages encoded so far.
func (e *Encoder) PageN() int { return len(e.index) }

// Header returns the header passed to EncodeHeader.
func (e *Encoder) Header() Header { return e.header }

// Trailer returns the trailer. Its FileChecksum is set only after Close
// succeeds.
func (e *Encoder) Trailer() Trailer { return e.trailer }

// PostApplyPos returns the database position after the file applies. It is
// valid after Close succeeds.
func (e *Encoder) PostApplyPos() Pos {
	return Pos{TXID: e.header.MaxTXID, PostApplyChecksum: e.trailer.PostApplyChecksum}
}

// SetPostApplyChecksum sets the rolling checksum of the database after the
// file applies. The caller must call it before Close, except for a snapshot,
// whose checksum the Encoder computes from its pages (and checks against the
// value set here, if any), and for a file with HeaderFlagNoChecksum.
func (e *Encoder) SetPostApplyChecksum(c Checksum) {
	e.trailer.PostApplyChecksum = c
	e.postSet = true
}

func (e *Encoder) checkState(want encState, what string) error {
	switch {
	case e.state == want:
		return nil
	case e.state == encClosed:
		return ErrEncoderClosed
	case e.state == encAborted:
		return ErrEncoderAborted
	case want == encHeader:
		return fmt.Errorf("cannot %s: header already encoded", what)
	default:
		return fmt.Errorf("cannot %s: header not encoded yet", what)
	}
}

// EncodeHeader validates h and writes it. It must be called once, first.
func (e *Encoder) EncodeHeader(h Header) error {
	if err := e.checkState(encHeader, "encode header"); err != nil {
		return err
	}
	if err := h.Validate(); err != nil {
		return err
	}
	e.header = h
	e.lockPgno = LockPgno(h.PageSize)
	e.dbSum = ChecksumFlag
	if e.comp == nil {
		e.comp = new(lz4.Compressor)
	}
	if need := frameHeaderSize + lz4.CompressBlockBound(int(h.PageSize)); cap(e.buf) < need {
		e.buf = make([]byte, 0, max(need, indexFlushSize+64))
	}
	b := h.appendBinary(e.buf[:0])
	if err := e.write(b); err != nil {
		return e.abort(fmt.Errorf("write header: %w", err))
	}
	e.state = encPage
	return nil
}

// EncodePage compresses data, the content of page h.Pgno, and writes it. Pages
// must come in strictly ascending order, within the header's commit size, and
// never the lock page; a snapshot must hold every page from 1 to its commit
// size. len(data) must equal the page size. h.Flags may be zero: the Encoder
// sets PageHeaderFlagSize. The Encoder does not retain data.
func (e *Encoder) EncodePage(h PageHeader, data []byte) error {
	if err := e.checkState(encPage, "encode page"); err != nil {
		return err
	}
	if err := h.Validate(); err != nil {
		return err
	}
	if uint32(len(data)) != e.header.PageSize {
		return fmt.Errorf("%w: page %d has %d bytes, page size is %d", ErrPageSize, h.Pgno, len(data), e.header.PageSize)
	}
	if err := checkPgno(&e.header, e.lockPgno, e.prevPgno, h.Pgno); err != nil {
		return err
	}

	h.Flags |= PageHeaderFlagSize
	buf := e.buf[:cap(e.buf)]
	n, err := e.comp.CompressBlock(data, buf[frameHeaderSize:])
	if err != nil || n == 0 {
		return fmt.Errorf("compress page %d: %v", h.Pgno, err)
	}
	h.put(buf)
	binary.BigEndian.PutUint32(buf[PageHeaderSize:], uint32(n))
	frame := buf[:frameHeaderSize+n]
	if _, err := e.w.Write(frame); err != nil {
		return e.abort(fmt.Errorf("write page %d: %w", h.Pgno, err))
	}
	// The file checksum covers the uncompressed page, not the LZ4 bytes.
	_, _ = e.hash.Write(frame[:frameHeaderSize])
	_, _ = e.hash.Write(data)
	e.n += int64(len(frame))

	e.index = append(e.index, indexEntry{pgno: h.Pgno, size: uint32(len(frame))})
	e.prevPgno = h.Pgno
	if e.header.IsSnapshot() && !e.header.NoChecksum() {
		e.dbSum = e.dbSum.Add(ChecksumPage(h.Pgno, data))
	}
	return nil
}

// checkPgno returns an error if page pgno may not follow page prev in a file
// with header h.
func checkPgno(h *Header, lockPgno, prev, pgno uint32) error {
	switch {
	case pgno > h.Commit:
		return fmt.Errorf("%w: page %d, commit size %d", ErrPageOutOfRange, pgno, h.Commit)
	case pgno == lockPgno:
		return fmt.Errorf("%w: page %d is the lock page for page size %d", ErrLockPage, pgno, h.PageSize)
	case pgno <= prev:
		return fmt.Errorf("%w: page %d after page %d", ErrOutOfOrderPages, pgno, prev)
	case h.IsSnapshot():
		if want := nextSnapshotPgno(prev, lockPgno); pgno != want {
			return fmt.Errorf("%w: page %d after page %d, want page %d", ErrSnapshotIncomplete, pgno, prev, want)
		}
	}
	return nil
}

// nextSnapshotPgno returns the page a snapshot must hold after prev.
func nextSnapshotPgno(prev, lockPgno uint32) uint32 {
	next := prev + 1
	if next == lockPgno {
		next++
	}
	return next
}

// snapshotComplete reports whether a snapshot whose last page is last holds
// every page up to commit.
func snapshotComplete(last, commit, lockPgno uint32) bool {
	return uint64(nextSnapshotPgno(last, lockPgno)) > uint64(commit)
}

// Close checks the file is complete, then writes the end of the page block,
// the page index and the trailer. Close after a successful Close does
// nothing. It does not close the underlying writer.
func (e *Encoder) Close() error {
	if e.state == encClosed {
		return nil
	}
	if err := e.checkState(encPage, "close"); err != nil {
		return err
	}
	if e.header.IsSnapshot() {
		if !snapshotComplete(e.prevPgno, e.header.Commit, e.lockPgno) {
			return fmt.Errorf("%w: last page %d, commit size %d", ErrSnapshotIncomplete, e.prevPgno, e.header.Commit)
		}
		if !e.header.NoChecksum() {
			if !e.postSet {
				e.trailer.PostApplyChecksum = e.dbSum
			} else if e.trailer.PostApplyChecksum != e.dbSum {
				return fmt.Errorf("%w: set to %s, pages give %s", ErrPostApplyChecksumMismatch, e.trailer.PostApplyChecksum, e.dbSum)
			}
		}
	}
	check := Trailer{PostApplyChecksum: e.trailer.PostApplyChecksum, FileChecksum: ChecksumFlag}
	if err := check.Validate(e.header); err != nil {
		return err
	}

	// End-of-pages marker, then page index records.
	var zero [PageHeaderSize]byte
	b := append(e.buf[:0], zero[:]...)
	offset := int64(HeaderSize)
	indexStart := e.n + PageHeaderSize
	for _, ent := range e.index {
		b = binary.AppendUvarint(b, uint64(ent.pgno))
		b = binary.AppendUvarint(b, uint64(offset))
		b = binary.AppendUvarint(b, uint64(ent.size))
		offset += int64(ent.size)
		if len(b) >= indexFlushSize {
			if err := e.write(b); err != nil {
				return e.abort(fmt.Errorf("write page index: %w", err))
			}
			b = b[:0]
		}
	}
	b = binary.AppendUvarint(b, 0)
	indexSize := e.n + int64(len(b)) - indexStart
	b = binary.BigEndian.AppendUint64(b, uint64(indexSize))
	b = binary.BigEndian.AppendUint64(b, uint64(e.trailer.PostApplyChecksum))
	if err := e.write(b); err != nil {
		return e.abort(fmt.Errorf("write page index: %w", err))
	}
	e.trailer.FileChecksum = ChecksumFlag | Checksum(e.hash.Sum64())
	b = binary.BigEndian.AppendUint64(b[:0], uint64(e.trailer.FileChecksum))
	if _, err := e.w.Write(b); err != nil {
		return e.abort(fmt.Errorf("write trailer: %w", err))
	}
	e.n += ChecksumSize
	e.state = encClosed
	return nil
}

// write writes b to the underlying writer and adds it to the file checksum.
func (e *Encoder) write(b []byte) error {
	n, err := e.w.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	_, _ = e.hash.Write(b[:n])
	e.n += int64(n)
	return err
}

func (e *Encoder) abort(err error) error {
	e.state = encAborted
	return fmt.Errorf("%w: %w", ErrEncoderAborted, err)
}
