package ltx

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"

	"github.com/pierrec/lz4/v4"
)

// decoder states, in call order.
type decState uint8

const (
	decHeader decState = iota // waiting for DecodeHeader
	decPage                   // returning pages
	decIndex                  // page block ended; waiting for Close
	decClosed                 // Close succeeded
	decFailed                 // an error occurred; err holds it
)

// readBufferSize is the size of the buffer a Decoder puts in front of its
// reader.
const readBufferSize = 8 << 10

// Decoder reads one LTX file from an io.Reader and checks all of it: header
// fields, page order, frame sizes, LZ4 data, page index, trailer and every
// checksum. Memory does not depend on the file: a Decoder holds about two
// pages of buffers.
//
// Call DecodeHeader, then DecodePage until it returns io.EOF, then Close,
// which reads the page index and trailer and verifies the file checksum.
// Pages are only known to be intact once Close succeeds: the caller must not
// act on decoded pages (apply them to a database) before that. Verify and
// DecodeDatabaseTo do all of these steps. After an error every method
// returns the same error. A Decoder is not safe for concurrent use.
type Decoder struct {
	r       *bufio.Reader
	state   decState
	err     error // sticky error once state is decFailed
	header  Header
	trailer Trailer
	hash    hasher // file checksum
	n       int64  // bytes consumed

	lockPgno uint32
	prevPgno uint32
	pageN    int
	dbSum    Checksum // rolling checksum of a snapshot's pages

	frameOff, frameSize int64        // last frame decoded
	seed                maphash.Seed // for frames and the index check
	frames              maphash.Hash // (pgno, offset, size) of every decoded frame

	maxBlock int    // largest valid compressed page for the page size
	zbuf     []byte // compressed page; may be shared by a Compactor's inputs
	page     []byte // scratch page for Close and Verify
	buf      [HeaderSize]byte
}

// NewDecoder returns a Decoder that reads from r. r must end where the LTX
// file ends: the Decoder buffers its reads, and Close fails with
// ErrTrailingData if anything follows the trailer. To read one file out of a
// longer stream, wrap the stream in an io.LimitReader of the file's size.
func NewDecoder(r io.Reader) *Decoder {
	d := &Decoder{seed: maphash.MakeSeed()}
	if br, ok := r.(*bufio.Reader); ok && br.Size() >= readBufferSize {
		d.r = br
	} else {
		d.r = bufio.NewReaderSize(r, readBufferSize)
	}
	d.frames.SetSeed(d.seed)
	return d
}

// Header returns the header read by DecodeHeader.
func (d *Decoder) Header() Header { return d.header }

// Trailer returns the trailer read by Close.
func (d *Decoder) Trailer() Trailer { return d.trailer }

// N returns the number of bytes consumed so far.
func (d *Decoder) N() int64 { return d.n }

// PageN returns the number of pages decoded so far.
func (d *Decoder) PageN() int { return d.pageN }

// LastFrame returns the offset and encoded size (page header, compressed
// size and compressed data) of the page most recently returned by
// DecodePage.
func (d *Decoder) LastFrame() (offset, size int64) { return d.frameOff, d.frameSize }

// PostApplyPos returns the database position after the file applies. It is
// valid after Close succeeds.
func (d *Decoder) PostApplyPos() Pos {
	return Pos{TXID: d.header.MaxTXID, PostApplyChecksum: d.trailer.PostApplyChecksum}
}

// fail makes err sticky and returns it.
func (d *Decoder) fail(err error) error {
	d.state, d.err = decFailed, err
	return err
}

// corrupt returns a sticky *FormatError at offset for page pgno (or zero).
func (d *Decoder) corrupt(offset int64, pgno uint32, format string, args ...any) error {
	return d.fail(&FormatError{Offset: offset, Pgno: pgno, Err: fmt.Errorf(format, args...)})
}

// readFull fills b, hashing it if hash is set. A short read means the file
// is truncated; what names what was being read.
func (d *Decoder) readFull(b []byte, hash bool, pgno uint32, what string) error {
	n, err := io.ReadFull(d.r, b)
	d.n += int64(n)
	if hash {
		_, _ = d.hash.Write(b[:n])
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if d.n == 0 {
			return d.corrupt(0, 0, "empty file: %w", io.ErrUnexpectedEOF)
		}
		return d.corrupt(d.n, pgno, "file truncated in %s: %w", what, io.ErrUnexpectedEOF)
	}
	return d.fail(fmt.Errorf("read %s at offset %d: %w", what, d.n, err))
}

// DecodeHeader reads and validates the header. Call it once, first.
func (d *Decoder) DecodeHeader() error {
	switch d.state {
	case decHeader:
	case decFailed:
		return d.err
	default:
		return errors.New("ltx: header already decoded")
	}
	b := d.buf[:HeaderSize]
	if err := d.readFull(b, true, 0, "header"); err != nil {
		return err
	}
	if err := d.header.UnmarshalBinary(b); err != nil {
		return d.fail(&FormatError{Offset: 0, Err: err})
	}
	if err := d.header.Validate(); err != nil {
		return d.fail(&FormatError{Offset: 0, Err: err})
	}
	d.lockPgno = LockPgno(d.header.PageSize)
	d.dbSum = ChecksumFlag
	d.maxBlock = lz4.CompressBlockBound(int(d.header.PageSize))
	if len(d.zbuf) < d.maxBlock {
		d.zbuf = make([]byte, d.maxBlock)
	}
	d.state = decPage
	return nil
}

// DecodePage reads the next page into h and data, which must be exactly one
// page long. It returns io.EOF after the last page. The page is not known to
// be intact until Close succeeds.
func (d *Decoder) DecodePage(h *PageHeader, data []byte) error {
	switch d.state {
	case decPage:
	case decIndex:
		return io.EOF
	case decClosed:
		return ErrDecoderClosed
	case decFailed:
		return d.err
	default:
		return errors.New("ltx: cannot decode page: header not decoded yet")
	}
	if uint32(len(data)) != d.header.PageSize {
		return fmt.Errorf("%w: buffer has %d bytes, page size is %d", ErrPageSize, len(data), d.header.PageSize)
	}

	start := d.n
	b := d.buf[:PageHeaderSize]
	if err := d.readFull(b, true, 0, "page header"); err != nil {
		return err
	}
	var ph PageHeader
	_ = ph.UnmarshalBinary(b)
	if ph.IsZero() {
		*h = ph
		d.state = decIndex
		return io.EOF
	}
	if err := ph.Validate(); err != nil {
		return d.corrupt(start, ph.Pgno, "%w", err)
	}
	if err := checkPgno(&d.header, d.lockPgno, d.prevPgno, ph.Pgno); err != nil {
		return d.corrupt(start, ph.Pgno, "%w", err)
	}

	if ph.Flags&PageHeaderFlagSize != 0 {
		if err := d.readBlock(ph.Pgno, data); err != nil {
			return err
		}
	} else if err := d.readLegacyFrame(ph.Pgno, data); err != nil {
		return err
	}
	_, _ = d.hash.Write(data)

	d.frameOff, d.frameSize = start, d.n-start
	d.writeFrame(ph.Pgno, start, d.frameSize)
	d.prevPgno = ph.Pgno
	d.pageN++
	if d.header.IsSnapshot() && !d.header.NoChecksum() {
		d.dbSum = d.dbSum.Add(ChecksumPage(ph.Pgno, data))
	}
	*h = ph
	return nil
}

// readBlock reads a compressed size and an LZ4 block that must decompress
// to exactly one page.
func (d *Decoder) readBlock(pgno uint32, data []byte) error {
	at := d.n
	b := d.buf[:PageSizeSize]
	if err := d.readFull(b, true, pgno, "compressed page size"); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(b)
	if size == 0 || int64(size) > int64(d.maxBlock) {
		return d.corrupt(at, pgno, "%w: compressed size %d, want 1 to %d for page size %d",
			ErrBadCompression, size, d.maxBlock, d.header.PageSize)
	}
	z := d.zbuf[:size]
	if err := d.readFull(z, false, pgno, "compressed page data"); err != nil {
		return err
	}
	n, err := lz4.UncompressBlock(z, data)
	if err != nil {
		return d.corrupt(at, pgno, "%w: %v", ErrBadCompression, err)
	} else if n != len(data) {
		return d.corrupt(at, pgno, "%w: decompresses to %d bytes, want %d", ErrBadCompression, n, len(data))
	}
	return nil
}

// writeFrame adds a frame to the running hash that Close compares with the
// page index.
func (d *Decoder) writeFrame(pgno uint32, offset, size int64) {
	var b [20]byte
	binary.BigEndian.PutUint32(b[0:], pgno)
	binary.BigEndian.PutUint64(b[4:], uint64(offset))
	binary.BigEndian.PutUint64(b[12:], uint64(size))
	_, _ = d.frames.Write(b[:])
}

// Close reads the rest of the file (any pages not yet decoded, the page
// index and the trailer) and verifies it: the index must describe exactly
// the page frames, the file checksum must match, a snapshot must hold every
// page and match its post-apply checksum, and nothing may follow the
// trailer. Close after a successful Close does nothing. It does not close the
// underlying reader.
func (d *Decoder) Close() error {
	switch d.state {
	case decClosed:
		return nil
	case decFailed:
		return d.err
	case decHeader:
		return errors.New("ltx: cannot close: header not decoded yet")
	case decPage:
		if err := d.drain(); err != nil {
			return err
		}
	}

	indexStart := d.n
	if d.header.IsSnapshot() && !snapshotComplete(d.prevPgno, d.header.Commit, d.lockPgno) {
		return d.corrupt(indexStart-PageHeaderSize, 0, "%w: last page %d, commit size %d",
			ErrSnapshotIncomplete, d.prevPgno, d.header.Commit)
	}
	if err := d.readIndex(); err != nil {
		return err
	}

	at := d.n
	b := d.buf[:TrailerSize]
	if err := d.readFull(b, false, 0, "trailer"); err != nil {
		return err
	}
	_, _ = d.hash.Write(b[:TrailerSize-ChecksumSize])
	_ = d.trailer.UnmarshalBinary(b)
	if sum := ChecksumFlag | Checksum(d.hash.Sum64()); sum != d.trailer.FileChecksum {
		return d.corrupt(at+TrailerSize-ChecksumSize, 0, "%w: trailer has %s, content gives %s",
			ErrChecksumMismatch, d.trailer.FileChecksum, sum)
	}
	if err := d.trailer.Validate(d.header); err != nil {
		return d.corrupt(at, 0, "%w", err)
	}
	if d.header.IsSnapshot() && !d.header.NoChecksum() && d.trailer.PostApplyChecksum != d.dbSum {
		return d.corrupt(at, 0, "%w: snapshot trailer has %s, its pages give %s",
			ErrPostApplyChecksumMismatch, d.trailer.PostApplyChecksum, d.dbSum)
	}
	if _, err := d.r.ReadByte(); err == nil {
		return d.corrupt(d.n, 0, "%w", ErrTrailingData)
	} else if !errors.Is(err, io.EOF) {
		return d.fail(fmt.Errorf("read after trailer at offset %d: %w", d.n, err))
	}
	d.state = decClosed
	return nil
}

// drain decodes and discards the remaining pages.
func (d *Decoder) drain() error {
	if len(d.page) != int(d.header.PageSize) {
		d.page = make([]byte, d.header.PageSize)
	}
	var h PageHeader
	for {
		if err := d.DecodePage(&h, d.page); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// readIndex reads the page index and checks it against the decoded frames:
// same pages, offsets and sizes, in order. It reads at most one record per
// decoded page.
func (d *Decoder) readIndex() error {
	start := d.n
	var idx maphash.Hash
	idx.SetSeed(d.seed)
	var prev uint32
	offset := int64(HeaderSize)
	blockEnd := start - PageHeaderSize // offset of the end-of-pages marker
	for i := 0; ; i++ {
		at := d.n
		pgno, err := d.readUvarint("page index")
		if err != nil {
			return err
		}
		if pgno == 0 {
			if i != d.pageN {
				return d.corrupt(at, 0, "%w: %d records for %d pages", ErrPageIndexMismatch, i, d.pageN)
			}
			break
		}
		if i >= d.pageN {
			return d.corrupt(at, 0, "%w: more records than the %d pages", ErrPageIndexMismatch, d.pageN)
		}
		off, err := d.readUvarint("page index")
		if err != nil {
			return err
		}
		size, err := d.readUvarint("page index")
		if err != nil {
			return err
		}
		switch {
		case pgno <= uint64(prev):
			return d.corrupt(at, 0, "%w: record %d names page %d after page %d", ErrPageIndexMismatch, i, pgno, prev)
		case pgno > uint64(d.header.Commit):
			return d.corrupt(at, 0, "%w: record %d names page %d beyond commit size %d", ErrPageIndexMismatch, i, pgno, d.header.Commit)
		case off != uint64(offset):
			return d.corrupt(at, uint32(pgno), "%w: page offset %d, frame is at %d", ErrPageIndexMismatch, off, offset)
		case size < PageHeaderSize || size > uint64(blockEnd-offset):
			return d.corrupt(at, uint32(pgno), "%w: frame size %d does not fit the page block", ErrPageIndexMismatch, size)
		}
		prev = uint32(pgno)
		var b [20]byte
		binary.BigEndian.PutUint32(b[0:], prev)
		binary.BigEndian.PutUint64(b[4:], off)
		binary.BigEndian.PutUint64(b[12:], size)
		_, _ = idx.Write(b[:])
		offset += int64(size)
	}
	if offset != blockEnd || idx.Sum64() != d.frames.Sum64() {
		return d.corrupt(start, 0, "%w: records do not match the page frames", ErrPageIndexMismatch)
	}

	at := d.n
	b := d.buf[:8]
	if err := d.readFull(b, true, 0, "page index size"); err != nil {
		return err
	}
	if size := binary.BigEndian.Uint64(b); size != uint64(at-start) {
		return d.corrupt(at, 0, "%w: index size field %d, index has %d bytes", ErrPageIndexMismatch, size, at-start)
	}
	return nil
}

// readUvarint reads and hashes one unsigned varint of at most 10 bytes.
func (d *Decoder) readUvarint(what string) (uint64, error) {
	start := d.n
	var x uint64
	for i := uint(0); i < binary.MaxVarintLen64; i++ {
		c, err := d.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, d.corrupt(d.n, 0, "file truncated in %s: %w", what, io.ErrUnexpectedEOF)
			}
			return 0, d.fail(fmt.Errorf("read %s at offset %d: %w", what, d.n, err))
		}
		d.n++
		_, _ = d.hash.Write([]byte{c})
		if i == binary.MaxVarintLen64-1 && c > 1 {
			break
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return x, nil
		}
	}
	return 0, d.corrupt(start, 0, "%w: varint overflows 64 bits in %s", ErrPageIndexMismatch, what)
}

// Verify decodes the whole file, discarding the pages, and verifies it as
// Close does. Header and Trailer are available afterwards.
func (d *Decoder) Verify() error {
	if err := d.DecodeHeader(); err != nil {
		return err
	}
	return d.Close()
}

// DecodeDatabaseTo decodes a snapshot and writes the database image it holds
// to w: Commit pages, with the lock page as zeros. It returns an error for a
// file that is not a snapshot. w receives pages before the file is verified;
// the caller must discard what it wrote if DecodeDatabaseTo fails.
func (d *Decoder) DecodeDatabaseTo(w io.Writer) error {
	if err := d.DecodeHeader(); err != nil {
		return err
	}
	if !d.header.IsSnapshot() {
		return fmt.Errorf("ltx: file with TXIDs %s-%s is not a snapshot (minimum TXID is not 1)",
			d.header.MinTXID, d.header.MaxTXID)
	}
	data := make([]byte, d.header.PageSize)
	var zero []byte
	var h PageHeader
	written := uint32(0)
	writeZero := func() error {
		if zero == nil {
			zero = make([]byte, d.header.PageSize)
		}
		written++
		if _, err := w.Write(zero); err != nil {
			return fmt.Errorf("write lock page %d: %w", written, err)
		}
		return nil
	}
	for {
		if err := d.DecodePage(&h, data); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if h.Pgno == written+2 { // checkPgno allows only the lock page as a gap
			if err := writeZero(); err != nil {
				return err
			}
		}
		written++
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("write page %d: %w", h.Pgno, err)
		}
	}
	if written+1 == d.header.Commit && d.header.Commit == d.lockPgno {
		if err := writeZero(); err != nil {
			return err
		}
	}
	return d.Close()
}
