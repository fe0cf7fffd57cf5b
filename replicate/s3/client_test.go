package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/pagefs/pagefs/ltx"
)

// newTestClient returns a Client for a fake S3 server.
func newTestClient(t *testing.T, h http.Handler, tune func(*Config)) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cfg := Config{
		Bucket: "bucket", Path: "db", Endpoint: srv.URL, ForcePathStyle: true, Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDSECRETID", "very-secret-key", ""),
		MaxBackoff:  10 * time.Millisecond,
	}
	if tune != nil {
		tune(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ltxFile is a minimal valid LTX file holding TXID 1.
func ltxFile(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := ltx.NewEncoder(&buf)
	if err := enc.EncodeHeader(ltx.Header{Version: ltx.Version, PageSize: 512, Commit: 1, MinTXID: 1, MaxTXID: 1, Timestamp: 1000}); err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 1}, make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestClient_KeyLayout(t *testing.T) {
	c, err := NewClient(Config{Bucket: "bucket", Path: "/prefix/app.db/"})
	if err != nil {
		t.Fatal(err)
	}
	// Litestream 0.5: <path>/<level %04x>/<min %016x>-<max %016x>.ltx
	if got, want := c.Key(9, 1, 0x2a), "prefix/app.db/0009/0000000000000001-000000000000002a.ltx"; got != want {
		t.Fatalf("key %q, want %q", got, want)
	}
	if got, want := c.WithPath("other").Key(0, 3, 3), "other/0000/0000000000000003-0000000000000003.ltx"; got != want {
		t.Fatalf("key %q, want %q", got, want)
	}
}

func TestClient_RetriesServerErrors(t *testing.T) {
	var puts atomic.Int32
	var body []byte
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut {
			w.WriteHeader(http.StatusNotImplemented)
			return
		}
		b, _ := io.ReadAll(r.Body)
		if puts.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("X-Amz-Meta-Litestream-Timestamp") == "" {
			t.Errorf("PUT without the timestamp metadata")
		}
		body = b
		w.Header().Set("ETag", `"x"`)
	}), nil)
	b := ltxFile(t)
	if _, err := c.WriteLTXFile(context.Background(), 0, 1, 1, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if puts.Load() != 3 {
		t.Fatalf("%d PUTs, want 3 (two retried 503s)", puts.Load())
	}
	if !bytes.Equal(body, b) {
		t.Fatal("retried upload sent different bytes")
	}
}

func TestClient_ErrNotExist(t *testing.T) {
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `<?xml version="1.0"?><Error><Code>NoSuchKey</Code><Message>gone</Message></Error>`)
	}), nil)
	_, err := c.OpenLTXFile(context.Background(), 0, 5, 5, 0, 0)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), "db/0000/0000000000000005-0000000000000005.ltx") {
		t.Fatalf("error %q does not name the key", err)
	}
}

func TestClient_ErrorsOmitCredentials(t *testing.T) {
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>denied</Message></Error>`)
	}), nil)
	_, err := c.WriteLTXFile(context.Background(), 0, 1, 1, bytes.NewReader(ltxFile(t)))
	if err == nil {
		t.Fatal("upload to a server that denies access succeeded")
	}
	for _, secret := range []string{"very-secret-key"} {
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("error %q holds a credential", err)
		}
	}
	if !strings.Contains(err.Error(), "s3://bucket/db/0000/") || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("error %q should name the key and the S3 error code", err)
	}
}

func TestClient_IdleTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 10))
		w.(http.Flusher).Flush()
		select { // stall mid-body
		case <-release:
		case <-r.Context().Done():
		}
	}), func(cfg *Config) { cfg.IdleTimeout = 100 * time.Millisecond; cfg.MaxAttempts = 1 })
	rc, err := c.OpenLTXFile(context.Background(), 0, 1, 1, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.ReadAll(rc)
	if err == nil || !strings.Contains(err.Error(), "no progress") {
		t.Fatalf("stalled read: %v, want a no-progress error", err)
	}
}

func TestClient_ListSeekUsesStartAfter(t *testing.T) {
	var startAfter string
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		startAfter = r.URL.Query().Get("start-after")
		w.Header().Set("Content-Type", "application/xml")
		io.WriteString(w, `<?xml version="1.0"?><ListBucketResult><Name>bucket</Name><IsTruncated>false</IsTruncated>`+
			`<Contents><Key>db/0000/0000000000000010-0000000000000010.ltx</Key><Size>200</Size><LastModified>2024-01-01T00:00:00Z</LastModified></Contents>`+
			`<Contents><Key>db/0000/junk</Key><Size>1</Size></Contents>`+
			`</ListBucketResult>`)
	}), nil)
	itr, err := c.LTXFiles(context.Background(), 0, 0x10)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ltx.SliceFileIterator(itr)
	if err != nil {
		t.Fatal(err)
	}
	if want := "db/0000/000000000000000f-ffffffffffffffff.ltx"; startAfter != want {
		t.Fatalf("start-after %q, want %q", startAfter, want)
	}
	if len(a) != 1 || a[0].MinTXID != 0x10 || a[0].Size != 200 {
		t.Fatalf("listed %+v", a)
	}
}
