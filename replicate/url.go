package replicate

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	"github.com/pagefs/pagefs/replicate/file"
	"github.com/pagefs/pagefs/replicate/s3"
)

// URL is a parsed backup URL: file:///abs/dir or s3://bucket/prefix with
// the query parameters Litestream 0.5 also reads (endpoint, region,
// forcePathStyle, skipVerify). A URL never holds credentials.
type URL struct {
	Scheme string // "file" or "s3"
	Path   string // file: the absolute folder; s3: the key prefix, without slashes at either end

	// S3 only.
	Bucket         string
	Endpoint       string
	Region         string
	ForcePathStyle bool
	SkipVerify     bool

	query string // raw query, kept for String
}

// String returns the URL, with the query as given. It holds no
// credentials: ParseURL refuses URLs that do.
func (u *URL) String() string {
	var s string
	if u.Scheme == "file" {
		s = "file://" + filepath.ToSlash(u.Path)
	} else {
		s = "s3://" + u.Bucket
		if u.Path != "" {
			s += "/" + u.Path
		}
	}
	if u.query != "" {
		s += "?" + u.query
	}
	return s
}

// Join returns the URL of a database under u; "." is u itself.
func (u *URL) Join(db string) *URL {
	v := *u
	if db == "." || db == "" {
		return &v
	}
	if u.Scheme == "file" {
		v.Path = filepath.Join(u.Path, filepath.FromSlash(db))
	} else {
		v.Path = strings.Trim(path.Join(u.Path, db), "/")
	}
	return &v
}

// Split returns the URL of the folder that holds the last path element,
// and that element: the database name of a "URL/DB" argument. The element
// is empty if the URL has no path.
func (u *URL) Split() (*URL, string) {
	v := *u
	var db string
	if u.Scheme == "file" {
		v.Path, db = filepath.Dir(u.Path), filepath.Base(u.Path)
	} else if i := strings.LastIndexByte(u.Path, '/'); i >= 0 {
		v.Path, db = u.Path[:i], u.Path[i+1:]
	} else {
		v.Path, db = "", u.Path
	}
	return &v, db
}

// ParseURL parses a backup URL. Errors name the URL and what is wrong.
func ParseURL(raw string) (*URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("backup URL: %w", err)
	}
	if u.User != nil {
		return nil, fmt.Errorf("backup URL %s://%s...: credentials in the URL are not accepted; use the AWS environment or config files", u.Scheme, u.Host)
	}
	out := &URL{Scheme: u.Scheme, query: u.RawQuery}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("backup URL %q: want file:///absolute/path (three slashes)", raw)
		}
		if len(u.Query()) > 0 {
			return nil, fmt.Errorf("backup URL %q: file URLs take no query parameters", raw)
		}
		if !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("backup URL %q: the path must be absolute", raw)
		}
		out.Path = filepath.Clean(u.Path)
		return out, nil
	case "s3":
		if err := parseS3(u, out); err != nil {
			return nil, fmt.Errorf("backup URL %q: %w", raw, err)
		}
		return out, nil
	case "":
		return nil, fmt.Errorf("backup URL %q: want file:///dir or s3://bucket/prefix", raw)
	default:
		return nil, fmt.Errorf("backup URL %q: unsupported scheme %q (want file or s3)", raw, u.Scheme)
	}
}

func parseS3(u *url.URL, out *URL) error {
	out.Bucket = u.Host
	out.Path = strings.Trim(path.Clean("/"+u.Path), "/")
	// Litestream's MinIO shorthand: s3://bucket.host:port/path.
	if strings.Contains(u.Host, ":") && !strings.Contains(u.Host, ".com") {
		if b, host, ok := strings.Cut(u.Host, "."); ok {
			out.Bucket, out.Endpoint, out.ForcePathStyle = b, "http://"+host, true
		}
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "endpoint", "region", "forcePathStyle", "force-path-style", "skipVerify", "skip-verify":
		default:
			return fmt.Errorf("unsupported query parameter %q (pagefs reads endpoint, region, forcePathStyle and skipVerify)", k)
		}
	}
	var err error
	boolParam := func(names ...string) (bool, bool) {
		for _, n := range names {
			if v := q.Get(n); v != "" {
				switch strings.ToLower(v) {
				case "true", "1", "t", "yes":
					return true, true
				case "false", "0", "f", "no":
					return false, true
				}
				err = fmt.Errorf("query parameter %s=%q is not a boolean", n, v)
				return false, false
			}
		}
		return false, false
	}
	if v := q.Get("endpoint"); v != "" {
		out.Endpoint = s3.EnsureScheme(v)
		out.ForcePathStyle = true // Litestream's default for custom endpoints
	}
	out.Region = q.Get("region")
	if v, ok := boolParam("forcePathStyle", "force-path-style"); ok {
		out.ForcePathStyle = v
	}
	if v, ok := boolParam("skipVerify", "skip-verify"); ok {
		out.SkipVerify = v
	}
	if err != nil {
		return err
	}
	if len(out.Bucket) < 3 {
		return fmt.Errorf("bucket name %q: need at least 3 characters", out.Bucket)
	}
	return nil
}

// Destination is one backup URL. It hands out a Client per database and
// lists the databases it holds.
type Destination struct {
	url *URL
	s3  *s3.Client // nil for file URLs

	// For destinations made by NewCustomDestination.
	client func(db string) Client
	dbs    func(ctx context.Context) ([]string, error)
}

// NewCustomDestination returns a destination served by other Clients
// (tests, other backends): client returns the Client of a database and
// dbs lists them. u names the destination in logs and position files.
func NewCustomDestination(u *URL, client func(db string) Client, dbs func(ctx context.Context) ([]string, error)) *Destination {
	return &Destination{url: u, client: client, dbs: dbs}
}

// S3Options adjusts S3 clients made by NewDestination; nil is fine.
type S3Options func(*s3.Config)

// NewDestination opens a backup destination. It makes no request.
func NewDestination(u *URL, opts ...S3Options) (*Destination, error) {
	d := &Destination{url: u}
	if u.Scheme == "s3" {
		cfg := s3.Config{
			Bucket: u.Bucket, Path: u.Path, Region: u.Region, Endpoint: u.Endpoint,
			ForcePathStyle: u.ForcePathStyle, SkipVerify: u.SkipVerify,
		}
		for _, o := range opts {
			if o != nil {
				o(&cfg)
			}
		}
		c, err := s3.NewClient(cfg)
		if err != nil {
			return nil, fmt.Errorf("backup %s: %w", u, err)
		}
		d.s3 = c
	}
	return d, nil
}

// URL returns the destination's URL.
func (d *Destination) URL() *URL { return d.url }

// String returns the URL as given.
func (d *Destination) String() string { return d.url.String() }

// Client returns the Client of a database ("." is the destination's root).
func (d *Destination) Client(db string) Client {
	if d.client != nil {
		return d.client(db)
	}
	u := d.url.Join(db)
	if d.s3 != nil {
		return d.s3.WithPath(u.Path)
	}
	return file.NewClient(u.Path)
}

// DBs lists the databases the destination holds, sorted.
func (d *Destination) DBs(ctx context.Context) ([]string, error) {
	if d.dbs != nil {
		return d.dbs(ctx)
	}
	if d.s3 != nil {
		return d.s3.ListDBs(ctx)
	}
	dbs, err := file.ListDBs(d.url.Path)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", d.url, err)
	}
	return dbs, nil
}

// NewClientFromURL parses raw and returns the Client of the database it
// names, such as file:///backups/app.db or s3://bucket/prefix/app.db.
func NewClientFromURL(raw string, opts ...S3Options) (Client, error) {
	u, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	if u.Path == "" || u.Path == "/" {
		return nil, errors.New("backup URL " + u.String() + ": name a database, as in s3://bucket/prefix/app.db")
	}
	d, err := NewDestination(u, opts...)
	if err != nil {
		return nil, err
	}
	return d.Client("."), nil
}
