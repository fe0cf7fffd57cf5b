package ltx

import (
	"encoding/binary"

	"github.com/pierrec/lz4/v4"
)

// LZ4 frame format constants (lz4_Frame_format.md), for page frames written
// without PageHeaderFlagSize by earlier LTX encoders.
const (
	lz4FrameMagic    = 0x184D2204
	lz4FlagVersion   = 0x40 // FLG bits 7-6 must be 01
	lz4FlagBlockSum  = 0x10 // each block is followed by a 4-byte checksum
	lz4FlagSize      = 0x08 // an 8-byte content size follows FLG/BD
	lz4FlagSum       = 0x04 // a 4-byte content checksum follows the end mark
	lz4FlagReserved  = 0x02
	lz4FlagDictID    = 0x01
	lz4BlockRaw      = 1 << 31 // block size bit: data stored uncompressed
	lz4MaxDictWindow = 64 << 10
)

// readLegacyFrame reads a page stored as an LZ4 frame: a frame descriptor,
// blocks that together decompress to exactly one page, an end mark and an
// optional content checksum. LZ4's own xxHash checksums are skipped, not
// verified: the file checksum covers the decompressed page.
func (d *Decoder) readLegacyFrame(pgno uint32, data []byte) error {
	at := d.n
	bad := func(format string, args ...any) error {
		return d.corrupt(at, pgno, "%w: LZ4 frame: "+format, append([]any{ErrBadCompression}, args...)...)
	}
	b := d.buf[:6]
	if err := d.readFull(b, false, pgno, "LZ4 frame header"); err != nil {
		return err
	}
	if magic := binary.LittleEndian.Uint32(b); magic != lz4FrameMagic {
		return bad("magic 0x%08x, want 0x%08x", magic, lz4FrameMagic)
	}
	flg, bd := b[4], b[5]
	if flg&0xc0 != lz4FlagVersion || flg&lz4FlagReserved != 0 || bd&0x8f != 0 || bd>>4 < 4 {
		return bad("unsupported descriptor FLG=0x%02x BD=0x%02x", flg, bd)
	}
	if flg&lz4FlagDictID != 0 {
		return bad("dictionary IDs are not supported")
	}
	blockMax := 1 << (8 + 2*(bd>>4)) // 4:64KiB, 5:256KiB, 6:1MiB, 7:4MiB
	n := 1                           // header checksum byte
	if flg&lz4FlagSize != 0 {
		n += 8
	}
	b = d.buf[:n]
	if err := d.readFull(b, false, pgno, "LZ4 frame header"); err != nil {
		return err
	}
	if flg&lz4FlagSize != 0 {
		if size := binary.LittleEndian.Uint64(b); size != uint64(len(data)) {
			return bad("content size %d, want %d", size, len(data))
		}
	}

	pos := 0
	for {
		at = d.n
		b = d.buf[:4]
		if err := d.readFull(b, false, pgno, "LZ4 block size"); err != nil {
			return err
		}
		v := binary.LittleEndian.Uint32(b)
		if v == 0 {
			break // end mark
		}
		raw, size := v&lz4BlockRaw != 0, int64(v&^lz4BlockRaw)
		if size > int64(blockMax) || size > int64(d.maxBlock) {
			return bad("block size %d too large for a %d-byte page", size, len(data))
		}
		if raw && size > int64(len(data)-pos) {
			return bad("uncompressed block of %d bytes overflows the page at %d", size, pos)
		}
		z := d.zbuf[:size]
		if err := d.readFull(z, false, pgno, "LZ4 block"); err != nil {
			return err
		}
		var m int
		if raw {
			m = copy(data[pos:], z)
		} else {
			var err error
			m, err = lz4.UncompressBlockWithDict(z, data[pos:], data[max(0, pos-lz4MaxDictWindow):pos])
			if err != nil {
				return bad("block at page offset %d: %v", pos, err)
			}
		}
		if m == 0 {
			return bad("empty block")
		}
		pos += m
		if flg&lz4FlagBlockSum != 0 {
			if err := d.readFull(d.buf[:4], false, pgno, "LZ4 block checksum"); err != nil {
				return err
			}
		}
	}
	if pos != len(data) {
		return bad("decompresses to %d bytes, want %d", pos, len(data))
	}
	if flg&lz4FlagSum != 0 {
		if err := d.readFull(d.buf[:4], false, pgno, "LZ4 content checksum"); err != nil {
			return err
		}
	}
	return nil
}
