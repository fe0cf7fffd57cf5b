package replicate_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/replicate"
	"github.com/pagefs/pagefs/replicate/file"
	"github.com/pagefs/pagefs/replicate/ltxtest"
)

// countingClient wraps a Client, counting calls by method and failing them
// all while fail is set.
type countingClient struct {
	replicate.Client
	mu    sync.Mutex
	fail  error
	calls map[string]int
}

func (c *countingClient) count(method string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[method]++
	return c.fail
}

func (c *countingClient) setFail(err error) {
	c.mu.Lock()
	c.fail = err
	c.mu.Unlock()
}

func (c *countingClient) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.calls {
		n += v
	}
	return n
}

func (c *countingClient) n(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

func (c *countingClient) LTXFiles(ctx context.Context, level int, seek ltx.TXID) (ltx.FileIterator, error) {
	if err := c.count("list"); err != nil {
		return nil, err
	}
	return c.Client.LTXFiles(ctx, level, seek)
}

func (c *countingClient) OpenLTXFile(ctx context.Context, level int, min, max ltx.TXID, off, size int64) (io.ReadCloser, error) {
	if err := c.count("get"); err != nil {
		return nil, err
	}
	return c.Client.OpenLTXFile(ctx, level, min, max, off, size)
}

func (c *countingClient) WriteLTXFile(ctx context.Context, level int, min, max ltx.TXID, r io.Reader) (*ltx.FileInfo, error) {
	if err := c.count("put"); err != nil {
		return nil, err
	}
	if level == 0 {
		c.count("put0")
	}
	return c.Client.WriteLTXFile(ctx, level, min, max, r)
}

func (c *countingClient) DeleteLTXFiles(ctx context.Context, a []*ltx.FileInfo) error {
	if err := c.count("delete"); err != nil {
		return err
	}
	return c.Client.DeleteLTXFiles(ctx, a)
}

// countingDestination is a file destination whose clients count calls.
func countingDestination(t testing.TB) (*replicate.Destination, func(db string) *countingClient) {
	t.Helper()
	root := t.TempDir()
	u, err := replicate.ParseURL("file://" + root)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	clients := map[string]*countingClient{}
	get := func(db string) *countingClient {
		mu.Lock()
		defer mu.Unlock()
		if clients[db] == nil {
			clients[db] = &countingClient{Client: file.NewClient(filepath.Join(root, db))}
		}
		return clients[db]
	}
	d := replicate.NewCustomDestination(u,
		func(db string) replicate.Client { return get(db) },
		func(ctx context.Context) ([]string, error) { return file.ListDBs(root) })
	return d, get
}

// chain is a simulated database whose commits land in a data directory's
// level-0 folder, as the mount writes them.
type chain struct {
	*ltxtest.DB
	dataDir, name string
	t             testing.TB
}

func newChain(t testing.TB, dataDir, name string, seed uint64) *chain {
	return &chain{DB: ltxtest.NewDB(4096, seed), dataDir: dataDir, name: name, t: t}
}

// commit writes the next transaction (n random pages of a database of
// size pages) and returns its TXID.
func (c *chain) commit(size uint32, n int) uint64 {
	c.t.Helper()
	b := c.RandomCommit(size, n)
	if _, err := ltxtest.WriteFile(filepath.Join(c.dataDir, c.name, "ltx", "0"), b); err != nil {
		c.t.Fatal(err)
	}
	return uint64(c.TXID)
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitHeld waits until every destination holds txid of db.
func waitHeld(t testing.TB, b *replicate.Backup, db string, txid uint64) {
	t.Helper()
	waitFor(t, "the backup to hold "+db+" TXID "+ltx.TXID(txid).String(), func() bool {
		return b.RetentionFloor(db) >= txid
	})
}

// restoreBytes restores c to a temporary file and returns its bytes.
func restoreBytes(t testing.TB, c replicate.Client, opt replicate.RestoreOptions) ([]byte, replicate.RestoreResult) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "restored.db")
	res, err := replicate.Restore(context.Background(), c, out, opt)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b, res
}

func mustEqualImage(t testing.TB, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("restored image (%d bytes) differs from the database (%d bytes)", len(got), len(want))
	}
}

// testLogger logs through t.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

var errOffline = errors.New("connection refused (test)")

func osWriteFile(p string, b []byte) error { return os.WriteFile(p, b, 0o644) }
