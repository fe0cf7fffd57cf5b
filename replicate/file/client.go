package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pagefs/pagefs/ltx"
)

// ClientType is the name of this backend, as returned by Client.Type.
const ClientType = "file"

// Client stores one database's LTX files under a folder:
// <path>/ltx/<level in decimal>/<min>-<max>.ltx, the layout of Litestream
// 0.5's file replica and of a pagefs data directory. It is safe for
// concurrent use.
type Client struct {
	path string
}

// NewClient returns a Client for the database whose folder is path, which
// must be absolute. Nothing is created until the first write.
func NewClient(path string) *Client {
	return &Client{path: filepath.Clean(path)}
}

// Type returns "file".
func (c *Client) Type() string { return ClientType }

// Path returns the database's folder.
func (c *Client) Path() string { return c.path }

// LevelDir returns the folder of a level.
func (c *Client) LevelDir(level int) string {
	return filepath.Join(c.path, "ltx", strconv.Itoa(level))
}

// Location returns the path of a file.
func (c *Client) Location(level int, min, max ltx.TXID) string {
	return filepath.Join(c.LevelDir(level), ltx.FormatFilename(min, max))
}

// LTXFiles lists a level's folder. CreatedAt is the file's mtime, which
// WriteLTXFile sets to the time in the file's header.
func (c *Client) LTXFiles(ctx context.Context, level int, seek ltx.TXID) (ltx.FileIterator, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(c.LevelDir(level))
	if errors.Is(err, fs.ErrNotExist) {
		return ltx.NewFileInfoSliceIterator(nil), nil
	} else if err != nil {
		return nil, fmt.Errorf("list %s: %w", c.LevelDir(level), err)
	}
	infos := make([]*ltx.FileInfo, 0, len(ents))
	for _, e := range ents {
		min, max, err := ltx.ParseFilename(e.Name())
		if err != nil || min < seek || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since the listing
		} else if err != nil {
			return nil, fmt.Errorf("list %s: %w", c.LevelDir(level), err)
		}
		infos = append(infos, &ltx.FileInfo{
			Level: level, MinTXID: min, MaxTXID: max,
			Size: fi.Size(), CreatedAt: fi.ModTime().UTC(),
		})
	}
	return ltx.NewFileInfoSliceIterator(infos), nil
}

// OpenLTXFile opens a file. A missing file gives an error matching
// os.ErrNotExist.
func (c *Client) OpenLTXFile(ctx context.Context, level int, min, max ltx.TXID, offset, size int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(c.Location(level, min, max))
	if err != nil {
		return nil, err // *fs.PathError names the file
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
	}
	if size > 0 {
		return &limitedFile{Reader: io.LimitReader(f, size), f: f}, nil
	}
	return f, nil
}

type limitedFile struct {
	io.Reader
	f *os.File
}

func (l *limitedFile) Close() error { return l.f.Close() }

// WriteLTXFile writes the file to "<name>.tmp", syncs it, renames it into
// place and syncs the folder. The file's mtime is set to the timestamp in
// its header, as Litestream does, so that listings give commit times.
func (c *Client) WriteLTXFile(ctx context.Context, level int, min, max ltx.TXID, r io.Reader) (_ *ltx.FileInfo, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name := c.Location(level, min, max)
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(tmp)
		}
	}()
	var hdrBuf [ltx.HeaderSize]byte
	n, err := io.ReadFull(r, hdrBuf[:])
	if err != nil {
		return nil, fmt.Errorf("write %s: read LTX header: %w", name, err)
	}
	var hdr ltx.Header
	if err := hdr.UnmarshalBinary(hdrBuf[:n]); err != nil {
		return nil, fmt.Errorf("write %s: %w", name, err)
	}
	if hdr.MinTXID != min || hdr.MaxTXID != max {
		return nil, fmt.Errorf("write %s: file holds TXIDs %s-%s", name, hdr.MinTXID, hdr.MaxTXID)
	}
	if _, err := f.Write(hdrBuf[:n]); err != nil {
		return nil, err
	}
	size, err := io.Copy(f, r)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", name, err)
	}
	size += int64(n)
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	ts := time.UnixMilli(hdr.Timestamp).UTC()
	if err := os.Chtimes(tmp, ts, ts); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, name); err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return &ltx.FileInfo{Level: level, MinTXID: min, MaxTXID: max, Size: size, CreatedAt: ts}, nil
}

// DeleteLTXFiles removes files; missing ones are skipped. The folders are
// synced once at the end.
func (c *Client) DeleteLTXFiles(ctx context.Context, a []*ltx.FileInfo) error {
	dirs := map[string]bool{}
	for _, info := range a {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := c.Location(info.Level, info.MinTXID, info.MaxTXID)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		dirs[filepath.Dir(p)] = true
	}
	for d := range dirs {
		if err := syncDir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// DeleteAll removes the database's ltx folder.
func (c *Client) DeleteAll(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return os.RemoveAll(filepath.Join(c.path, "ltx"))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ListDBs returns the names of the databases stored under root: every
// folder below it, at any depth, that holds an ltx folder with a level
// folder in it. Names use slashes and are relative to root; "." means root
// itself is a database. Folders whose name starts with a dot are skipped.
func ListDBs(root string) ([]string, error) {
	var dbs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipAll
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if p != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if d.Name() != "ltx" || p == root {
			return nil
		}
		if hasLevelDir(p) {
			rel, err := filepath.Rel(root, filepath.Dir(p))
			if err != nil {
				return err
			}
			dbs = append(dbs, filepath.ToSlash(rel))
		}
		return filepath.SkipDir
	})
	return dbs, err
}

func hasLevelDir(ltxDir string) bool {
	ents, err := os.ReadDir(ltxDir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n >= 0 && n <= 9 && e.IsDir() {
			return true
		}
	}
	return false
}
