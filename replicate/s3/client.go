package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/pagefs/pagefs/ltx"
)

// ClientType is the name of this backend, as returned by Client.Type.
const ClientType = "s3"

// MetadataTimestamp is the object metadata key that holds the time in an LTX
// file's header, in RFC 3339 form; Litestream 0.5 writes and reads it too.
const MetadataTimestamp = "litestream-timestamp"

// maxKeys is how many keys one DeleteObjects request may name.
const maxKeys = 1000

// Client stores one database's LTX files in an S3 bucket under
// <Path>/<level %04x>/<min>-<max>.ltx, the layout of Litestream 0.5's S3
// replica. It is safe for concurrent use.
type Client struct {
	cfg    Config
	shared *shared
}

// shared is the SDK client, built on first use and shared by every Client
// made with WithPath.
type shared struct {
	mu  sync.Mutex
	api *s3.Client
}

// NewClient returns a Client. It makes no request: the SDK client is built,
// and the bucket's region looked up if it must be, on first use.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Client{cfg: cfg, shared: &shared{}}, nil
}

// WithPath returns a Client for another key prefix in the same bucket that
// shares this one's connections.
func (c *Client) WithPath(path string) *Client {
	cfg := c.cfg
	cfg.Path = strings.Trim(path, "/")
	return &Client{cfg: cfg, shared: c.shared}
}

// Type returns "s3".
func (c *Client) Type() string { return ClientType }

// Bucket returns the bucket name.
func (c *Client) Bucket() string { return c.cfg.Bucket }

// Path returns the key prefix.
func (c *Client) Path() string { return c.cfg.Path }

func (c *Client) api(ctx context.Context) (*s3.Client, error) {
	c.shared.mu.Lock()
	defer c.shared.mu.Unlock()
	if c.shared.api == nil {
		api, err := newAPI(ctx, c.cfg)
		if err != nil {
			return nil, err
		}
		c.shared.api = api
	}
	return c.shared.api, nil
}

// levelPrefix returns the key prefix of a level, ending in a slash.
func (c *Client) levelPrefix(level int) string {
	return joinKey(c.cfg.Path, fmt.Sprintf("%04x", level)) + "/"
}

func joinKey(a, b string) string {
	if a == "" {
		return b
	}
	return a + "/" + b
}

// Key returns the object key of a file.
func (c *Client) Key(level int, min, max ltx.TXID) string {
	return c.levelPrefix(level) + ltx.FormatFilename(min, max)
}

// Location returns "s3://bucket/key" for a file.
func (c *Client) Location(level int, min, max ltx.TXID) string {
	return "s3://" + c.cfg.Bucket + "/" + c.Key(level, min, max)
}

// LTXFiles lists a level with ListObjectsV2, page by page as the iterator
// advances, starting after the keys below seek. CreatedAt is the object's
// LastModified.
func (c *Client) LTXFiles(ctx context.Context, level int, seek ltx.TXID) (ltx.FileIterator, error) {
	api, err := c.api(ctx)
	if err != nil {
		return nil, err
	}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(c.cfg.Bucket), Prefix: aws.String(c.levelPrefix(level))}
	if seek > 1 {
		in.StartAfter = aws.String(c.levelPrefix(level) + ltx.FormatFilename(seek-1, ^ltx.TXID(0)))
	}
	return &fileIterator{c: c, ctx: ctx, level: level, seek: seek, pager: s3.NewListObjectsV2Paginator(api, in)}, nil
}

type fileIterator struct {
	c     *Client
	ctx   context.Context
	level int
	seek  ltx.TXID
	pager *s3.ListObjectsV2Paginator
	page  []types.Object
	item  *ltx.FileInfo
	err   error
	done  bool
}

func (it *fileIterator) Next() bool {
	it.item = nil
	for !it.done && it.err == nil {
		if len(it.page) == 0 {
			if !it.pager.HasMorePages() {
				it.done = true
				return false
			}
			ctx, cancel := context.WithTimeout(it.ctx, it.c.cfg.RequestTimeout)
			out, err := it.pager.NextPage(ctx)
			cancel()
			if err != nil {
				it.err = fmt.Errorf("s3: list s3://%s/%s: %w", it.c.cfg.Bucket, it.c.levelPrefix(it.level), err)
				return false
			}
			it.page = out.Contents
			continue
		}
		obj := it.page[0]
		it.page = it.page[1:]
		key := aws.ToString(obj.Key)
		min, max, err := ltx.ParseFilename(key[strings.LastIndexByte(key, '/')+1:])
		if err != nil || min < it.seek || key != it.c.Key(it.level, min, max) {
			continue
		}
		it.item = &ltx.FileInfo{
			Level: it.level, MinTXID: min, MaxTXID: max,
			Size: aws.ToInt64(obj.Size), CreatedAt: aws.ToTime(obj.LastModified).UTC(),
		}
		return true
	}
	return false
}

func (it *fileIterator) Item() *ltx.FileInfo { return it.item }
func (it *fileIterator) Err() error          { return it.err }
func (it *fileIterator) Close() error        { it.done = true; return it.err }

// OpenLTXFile starts a GetObject for the byte range. The transfer is
// cancelled if it makes no progress for IdleTimeout.
func (c *Client) OpenLTXFile(ctx context.Context, level int, min, max ltx.TXID, offset, size int64) (io.ReadCloser, error) {
	api, err := c.api(ctx)
	if err != nil {
		return nil, err
	}
	key := c.Key(level, min, max)
	in := &s3.GetObjectInput{Bucket: aws.String(c.cfg.Bucket), Key: aws.String(key)}
	if size > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+size-1))
	} else if offset > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	wd := newWatchdog(ctx, c.cfg.IdleTimeout)
	out, err := api.GetObject(wd.ctx, in)
	if err != nil {
		wd.stop()
		if isNotExist(err) {
			return nil, fmt.Errorf("s3: s3://%s/%s: %w", c.cfg.Bucket, key, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("s3: get s3://%s/%s: %w", c.cfg.Bucket, key, wd.cause(err))
	}
	return &bodyReader{rc: out.Body, wd: wd}, nil
}

// WriteLTXFile uploads the file with one PutObject. The body is sent from r
// if r is an io.ReadSeeker (so that retries can rewind it), otherwise it is
// first copied to a temporary file. The header's timestamp is stored in the
// object's metadata under MetadataTimestamp.
func (c *Client) WriteLTXFile(ctx context.Context, level int, min, max ltx.TXID, r io.Reader) (*ltx.FileInfo, error) {
	api, err := c.api(ctx)
	if err != nil {
		return nil, err
	}
	key := c.Key(level, min, max)
	rs, ok := r.(io.ReadSeeker)
	if !ok {
		tmp, err := spool(r)
		if err != nil {
			return nil, fmt.Errorf("s3: put s3://%s/%s: %w", c.cfg.Bucket, key, err)
		}
		defer func() { tmp.Close(); os.Remove(tmp.Name()) }()
		rs = tmp
	}
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	end, err := rs.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	var hdrBuf [ltx.HeaderSize]byte
	if _, err := rs.Seek(start, io.SeekStart); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(rs, hdrBuf[:]); err != nil {
		return nil, fmt.Errorf("s3: put s3://%s/%s: read LTX header: %w", c.cfg.Bucket, key, err)
	}
	var hdr ltx.Header
	if err := hdr.UnmarshalBinary(hdrBuf[:]); err != nil {
		return nil, fmt.Errorf("s3: put s3://%s/%s: %w", c.cfg.Bucket, key, err)
	}
	if hdr.MinTXID != min || hdr.MaxTXID != max {
		return nil, fmt.Errorf("s3: put s3://%s/%s: file holds TXIDs %s-%s", c.cfg.Bucket, key, hdr.MinTXID, hdr.MaxTXID)
	}
	if _, err := rs.Seek(start, io.SeekStart); err != nil {
		return nil, err
	}
	ts := time.UnixMilli(hdr.Timestamp).UTC()
	wd := newWatchdog(ctx, c.cfg.IdleTimeout)
	defer wd.stop()
	_, err = api.PutObject(wd.ctx, &s3.PutObjectInput{
		Bucket:        aws.String(c.cfg.Bucket),
		Key:           aws.String(key),
		Body:          &kickSeeker{rs: rs, wd: wd},
		ContentLength: aws.Int64(end - start),
		Metadata:      map[string]string{MetadataTimestamp: ts.Format(time.RFC3339Nano)},
	})
	if err != nil {
		return nil, fmt.Errorf("s3: put s3://%s/%s: %w", c.cfg.Bucket, key, wd.cause(err))
	}
	return &ltx.FileInfo{Level: level, MinTXID: min, MaxTXID: max, Size: end - start, CreatedAt: ts}, nil
}

func spool(r io.Reader) (*os.File, error) {
	f, err := os.CreateTemp("", "pagefs-upload-*.ltx")
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// DeleteLTXFiles deletes with DeleteObjects, up to 1000 keys a request.
func (c *Client) DeleteLTXFiles(ctx context.Context, a []*ltx.FileInfo) error {
	keys := make([]string, len(a))
	for i, info := range a {
		keys[i] = c.Key(info.Level, info.MinTXID, info.MaxTXID)
	}
	return c.deleteKeys(ctx, keys)
}

func (c *Client) deleteKeys(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	api, err := c.api(ctx)
	if err != nil {
		return err
	}
	for len(keys) > 0 {
		n := min(len(keys), maxKeys)
		ids := make([]types.ObjectIdentifier, n)
		for i, k := range keys[:n] {
			ids[i] = types.ObjectIdentifier{Key: aws.String(k)}
		}
		rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		out, err := api.DeleteObjects(rctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(c.cfg.Bucket),
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		cancel()
		if err != nil {
			return fmt.Errorf("s3: delete %d objects from s3://%s/%s: %w", n, c.cfg.Bucket, c.cfg.Path, err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("s3: delete s3://%s/%s: %s (%s), and %d more errors", c.cfg.Bucket, aws.ToString(e.Key), aws.ToString(e.Message), aws.ToString(e.Code), len(out.Errors)-1)
		}
		keys = keys[n:]
	}
	return nil
}

// DeleteAll deletes every object under the level prefixes of Path.
func (c *Client) DeleteAll(ctx context.Context) error {
	api, err := c.api(ctx)
	if err != nil {
		return err
	}
	var keys []string
	for level := 0; level <= 9; level++ {
		pager := s3.NewListObjectsV2Paginator(api, &s3.ListObjectsV2Input{Bucket: aws.String(c.cfg.Bucket), Prefix: aws.String(c.levelPrefix(level))})
		for pager.HasMorePages() {
			rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
			out, err := pager.NextPage(rctx)
			cancel()
			if err != nil {
				return fmt.Errorf("s3: list s3://%s/%s: %w", c.cfg.Bucket, c.levelPrefix(level), err)
			}
			for _, o := range out.Contents {
				keys = append(keys, aws.ToString(o.Key))
			}
		}
	}
	return c.deleteKeys(ctx, keys)
}

// ListDBs returns the databases stored under Path: every prefix, at any
// depth, with a level folder (0000 to 0009) directly under it. Names are
// relative to Path; "." means Path itself is a database.
func (c *Client) ListDBs(ctx context.Context) ([]string, error) {
	api, err := c.api(ctx)
	if err != nil {
		return nil, err
	}
	root := ""
	if c.cfg.Path != "" {
		root = c.cfg.Path + "/"
	}
	var dbs []string
	var walk func(prefix string, depth int) error
	walk = func(prefix string, depth int) error {
		if depth > 32 {
			return nil
		}
		pager := s3.NewListObjectsV2Paginator(api, &s3.ListObjectsV2Input{
			Bucket: aws.String(c.cfg.Bucket), Prefix: aws.String(prefix), Delimiter: aws.String("/"),
		})
		var children []string
		isDB := false
		for pager.HasMorePages() {
			rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
			out, err := pager.NextPage(rctx)
			cancel()
			if err != nil {
				return fmt.Errorf("s3: list s3://%s/%s: %w", c.cfg.Bucket, prefix, err)
			}
			for _, cp := range out.CommonPrefixes {
				p := aws.ToString(cp.Prefix)
				name := strings.TrimSuffix(strings.TrimPrefix(p, prefix), "/")
				if isLevelName(name) {
					isDB = true
				} else if name != "" {
					children = append(children, p)
				}
			}
		}
		if isDB {
			rel := strings.TrimSuffix(strings.TrimPrefix(prefix, root), "/")
			if rel == "" {
				rel = "."
			}
			dbs = append(dbs, rel)
			return nil
		}
		for _, ch := range children {
			if err := walk(ch, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root, 0); err != nil {
		return nil, err
	}
	return dbs, nil
}

func isLevelName(s string) bool {
	return len(s) == 4 && s >= "0000" && s <= "0009"
}

func isNotExist(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return true
		}
	}
	return false
}
