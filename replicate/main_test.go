package replicate_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/pagefs/pagefs/replicate"
	"github.com/pagefs/pagefs/replicate/s3"
	"github.com/pagefs/pagefs/replicate/s3/miniotest"
)

// minio is the server this package's tests share; minioErr says why there
// is none.
var (
	minio    *miniotest.Server
	minioErr error
)

func TestMain(m *testing.M) {
	minio, minioErr = miniotest.StartMain()
	code := m.Run()
	if minio != nil {
		minio.Stop()
	}
	os.Exit(code)
}

// needMinIO returns the shared server, skipping the test without one (or
// failing it when CI=true).
func needMinIO(t testing.TB) *miniotest.Server {
	t.Helper()
	if minio == nil {
		if os.Getenv("CI") == "true" || !miniotest.Missing(minioErr) {
			t.Fatalf("MinIO: %v", minioErr)
		}
		t.Skipf("skipping: %v", minioErr)
	}
	return minio
}

// backendTypes are the backends every conformance test runs against.
var backendTypes = []string{"file", "s3"}

// newDestination returns an empty destination of a backend.
func newDestination(t testing.TB, typ string) *replicate.Destination {
	t.Helper()
	var raw string
	switch typ {
	case "file":
		raw = "file://" + t.TempDir()
	case "s3":
		srv := needMinIO(t)
		raw = srv.URL(srv.NewBucket(t, "conf"), "backups/x")
	default:
		t.Fatalf("unknown backend %q", typ)
	}
	u, err := replicate.ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	d, err := replicate.NewDestination(u, s3Creds())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// s3Creds gives S3 clients the test server's keys.
func s3Creds() replicate.S3Options {
	return func(c *s3.Config) {
		if minio != nil {
			c.Credentials = minio.Credentials()
		}
	}
}

// runWithClient runs fn against a fresh database client of every backend.
func runWithClient(t *testing.T, fn func(t *testing.T, c replicate.Client)) {
	for _, typ := range backendTypes {
		t.Run(typ, func(t *testing.T) {
			d := newDestination(t, typ)
			fn(t, d.Client(strings.ReplaceAll(fmt.Sprintf("db-%s.sqlite", t.Name()), "/", "_")))
		})
	}
}
