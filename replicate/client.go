package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/replicate/file"
	"github.com/pagefs/pagefs/replicate/s3"
)

// SnapshotLevel is the level that holds snapshots: files that start at
// TXID 1 and hold a whole database. Levels 1 to SnapshotLevel-1 hold
// compactions and level 0 holds the files captured per transaction.
const SnapshotLevel = 9

// Client stores the LTX files of one database at one backup destination. It
// is modelled on Litestream 0.5's ReplicaClient so that both tools share a
// bucket layout. Implementations are safe for concurrent use.
//
// Every method takes a context: a Client bounds each request it makes with
// its own deadline as well, so a caller that passes context.Background still
// never waits forever.
type Client interface {
	// Type returns the backend name: "file" or "s3".
	Type() string

	// LTXFiles returns an iterator over the files of a level, in TXID
	// order, starting at the first file whose MinTXID is at least seek.
	// A level that does not exist gives an empty iterator. The caller must
	// Close the iterator. CreatedAt is the best time the listing gives
	// cheaply (the file's mtime, the object's LastModified); the exact
	// commit time is the Timestamp in the file's header.
	LTXFiles(ctx context.Context, level int, seek ltx.TXID) (ltx.FileIterator, error)

	// OpenLTXFile opens a file for reading, from offset, for size bytes
	// (zero means to the end). A missing file gives an error that matches
	// os.ErrNotExist. The caller must Close the reader.
	OpenLTXFile(ctx context.Context, level int, min, max ltx.TXID, offset, size int64) (io.ReadCloser, error)

	// WriteLTXFile stores the LTX file read from r under its level and
	// TXID range, replacing any file of that name. The write is atomic:
	// readers see the whole file or none of it. It returns what it stored.
	WriteLTXFile(ctx context.Context, level int, min, max ltx.TXID, r io.Reader) (*ltx.FileInfo, error)

	// DeleteLTXFiles deletes the files named by a (level, MinTXID and
	// MaxTXID are used). Missing files are not an error.
	DeleteLTXFiles(ctx context.Context, a []*ltx.FileInfo) error

	// DeleteAll deletes every file of the database.
	DeleteAll(ctx context.Context) error
}

// Locator is implemented by Clients that can name where a file is stored,
// for error messages: an object key or a path.
type Locator interface {
	Location(level int, min, max ltx.TXID) string
}

// Compile-time checks that the backends are Clients and Locators.
var (
	_ Client  = (*file.Client)(nil)
	_ Client  = (*s3.Client)(nil)
	_ Locator = (*file.Client)(nil)
	_ Locator = (*s3.Client)(nil)
)

// Location names where a file is stored, using the client's Locator if it
// has one.
func Location(c Client, level int, min, max ltx.TXID) string {
	if l, ok := c.(Locator); ok {
		return l.Location(level, min, max)
	}
	return fmt.Sprintf("%s level %d %s", c.Type(), level, ltx.FormatFilename(min, max))
}

// FileError reports a problem with one stored LTX file, naming where it is.
type FileError struct {
	Location string // object key or path
	Level    int
	MinTXID  ltx.TXID
	MaxTXID  ltx.TXID
	Err      error
}

func (e *FileError) Error() string { return fmt.Sprintf("%s: %v", e.Location, e.Err) }

// Unwrap returns the underlying error.
func (e *FileError) Unwrap() error { return e.Err }

func fileError(c Client, info *ltx.FileInfo, err error) error {
	var fe *FileError
	if errors.As(err, &fe) {
		return err
	}
	return &FileError{Location: Location(c, info.Level, info.MinTXID, info.MaxTXID), Level: info.Level, MinTXID: info.MinTXID, MaxTXID: info.MaxTXID, Err: err}
}

// ListLevel returns every file of a level from seek on, in TXID order.
func ListLevel(ctx context.Context, c Client, level int, seek ltx.TXID) ([]*ltx.FileInfo, error) {
	itr, err := c.LTXFiles(ctx, level, seek)
	if err != nil {
		return nil, err
	}
	return ltx.SliceFileIterator(itr)
}

// ReadHeader reads the header of a stored file.
func ReadHeader(ctx context.Context, c Client, info *ltx.FileInfo) (ltx.Header, error) {
	rc, err := c.OpenLTXFile(ctx, info.Level, info.MinTXID, info.MaxTXID, 0, ltx.HeaderSize)
	if err != nil {
		return ltx.Header{}, fileError(c, info, err)
	}
	defer rc.Close()
	b := make([]byte, ltx.HeaderSize)
	if _, err := io.ReadFull(rc, b); err != nil {
		return ltx.Header{}, fileError(c, info, fmt.Errorf("read header: %w", err))
	}
	var hdr ltx.Header
	if err := hdr.UnmarshalBinary(b); err != nil {
		return ltx.Header{}, fileError(c, info, err)
	}
	if err := hdr.Validate(); err != nil {
		return ltx.Header{}, fileError(c, info, err)
	}
	return hdr, nil
}

// ReadTrailer reads the trailer of a stored file, whose size must be known.
func ReadTrailer(ctx context.Context, c Client, info *ltx.FileInfo) (ltx.Trailer, error) {
	if info.Size < ltx.HeaderSize+ltx.TrailerSize {
		return ltx.Trailer{}, fileError(c, info, fmt.Errorf("%w: file of %d bytes is too short", ltx.ErrInvalidFile, info.Size))
	}
	rc, err := c.OpenLTXFile(ctx, info.Level, info.MinTXID, info.MaxTXID, info.Size-ltx.TrailerSize, ltx.TrailerSize)
	if err != nil {
		return ltx.Trailer{}, fileError(c, info, err)
	}
	defer rc.Close()
	b := make([]byte, ltx.TrailerSize)
	if _, err := io.ReadFull(rc, b); err != nil {
		return ltx.Trailer{}, fileError(c, info, fmt.Errorf("read trailer: %w", err))
	}
	var t ltx.Trailer
	if err := t.UnmarshalBinary(b); err != nil {
		return ltx.Trailer{}, fileError(c, info, err)
	}
	return t, nil
}
