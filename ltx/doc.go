/*
Package ltx reads and writes LTX files, the transaction files that pagefs
captures from SQLite and ships to backups and replicas. The format is
byte-compatible with version 3 of LTX as written and read by
github.com/superfly/ltx v0.5 (and so with Litestream 0.5).

# Basics

An LTX file holds the pages that one or more consecutive transactions
(MinTXID through MaxTXID) changed:

	header     100 bytes: magic "LTX1", flags, page size, commit size in pages,
	           TXID range, timestamp, pre-apply checksum, WAL origin, node ID
	page block one frame per page, in ascending page order: a 6-byte
	           PageHeader, a 4-byte compressed size, an LZ4 block; then six
	           zero bytes
	page index per page, uvarints of page number, frame offset and frame
	           size; a zero uvarint; the index size as a big-endian uint64
	trailer    post-apply checksum and file checksum, 8 bytes each

A file whose MinTXID is 1 is a snapshot: it holds every page of the database
from 1 to Commit, except the lock page (see LockPgno), which SQLite never
writes and LTX never stores.

Checksums are CRC-64 (ISO polynomial) with ChecksumFlag (bit 63) set. The
checksum of a page is ChecksumPage(pgno, data). The rolling checksum of a
database is ChecksumFlag folded (Checksum.Add, an XOR) with the checksum of
every page but the lock page; each file carries the database checksum before
(PreApplyChecksum, in the header) and after (PostApplyChecksum, in the
trailer) it applies, so a chain of files can be checked without the database.
The file checksum covers the header, each page header and compressed size,
each page's uncompressed data, the end-of-pages marker, the page index and the
post-apply checksum.

There are a few types. Header, PageHeader and Trailer are plain values with
Validate, MarshalBinary and UnmarshalBinary. Encoder writes a file, Decoder
reads and verifies one, and Compactor merges consecutive files into one.
TXID, Checksum and Pos print and parse as fixed-width hex; FormatFilename and
ParseFilename name files; FileInfo and FileIterator describe stored files.

# Caveats

The Encoder and Decoder stream: neither holds page data beyond one page, but
the Encoder keeps the page index (8 bytes per page) until Close, and a
Compactor holds one page and one read buffer per input.

A Decoder returns pages before it has seen the file checksum. The caller must
not act on them until Close (or Verify) succeeds.

The Decoder is stricter than superfly/ltx in ways that files written by it
never trip: the 20 reserved header bytes must be zero, page offsets and sizes
in the page index must match the page frames exactly, a snapshot must hold
every page up to its commit size, a file with commit size zero must carry the
empty-database checksum, and the lock page may not be stored. Page frames in
the older layout (no size flag, an LZ4 frame instead of a block) are read but
never written; their LZ4 frame checksums are not checked, as the file checksum
covers the decompressed data.

The Compactor requires a strict chain (each input starts at the transaction
after the previous one ends, and its pre-apply checksum is the previous
post-apply checksum); superfly/ltx's compactor also accepts inputs whose TXID
ranges overlap.

The file checksum covers uncompressed page data, not the LZ4 bytes: two
files with different but valid LZ4 encodings of the same pages have the same
checksum.
*/
package ltx
