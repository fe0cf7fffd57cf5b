package integration

import (
	"compress/gzip"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/pagefs/pagefs/fuse"
	"github.com/pagefs/pagefs/mount"
)

// TestRecordTraces records what SQLite does through the mount in each
// journal mode into mount/testdata/traces, for mount's kernel-free replay
// and crash-point tests. It runs only with PAGEFS_RECORD_TRACES=1.
func TestRecordTraces(t *testing.T) {
	if os.Getenv("PAGEFS_RECORD_TRACES") != "1" {
		t.Skip("set PAGEFS_RECORD_TRACES=1 to re-record mount/testdata/traces")
	}
	requireFUSE(t)
	for _, mode := range journalModes {
		t.Run(mode, func(t *testing.T) {
			out := filepath.Join("..", "mount", "testdata", "traces", fmt.Sprintf("%s.jsonl.gz", mode))
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			zw := gzip.NewWriter(f)
			data, dir := t.TempDir(), t.TempDir()
			store, err := mount.Open(mount.Config{DataDir: data, Tracer: mount.NewTracer(zw), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			srv, err := fuse.Mount(dir, store, fuse.Options{NoPassthrough: true})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "trace.db")
			db := openDB(t, path, "journal_mode("+mode+")", "synchronous(FULL)", "cache_size(20)")
			exec1(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`)
			for i := 0; i < 25; i++ {
				exec1(t, db, `INSERT INTO t (v) VALUES (?)`, fmt.Sprintf("row %d of the trace", i))
			}
			// A transaction larger than the page cache, so SQLite spills
			// pages before it commits.
			exec1(t, db, `INSERT INTO t (v) SELECT printf('%0300d', id) FROM t`)
			exec1(t, db, `INSERT INTO t (v) SELECT printf('%0300d', id) FROM t`)
			exec1(t, db, `UPDATE t SET v = 'updated' WHERE id % 4 = 0`)
			exec1(t, db, `DELETE FROM t WHERE id > 60`)
			tx, _ := db.Begin()
			tx.Exec(`DELETE FROM t`)
			tx.Rollback()
			if mode == "WAL" {
				exec1(t, db, `PRAGMA wal_checkpoint(TRUNCATE)`)
			}
			exec1(t, db, `INSERT INTO t (v) VALUES ('last')`)
			db.Close()
			if err := srv.Unmount(); err != nil {
				t.Fatal(err)
			}
			store.Close()
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			f.Close()
		})
	}
}
