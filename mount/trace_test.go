package mount

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/pagefs/pagefs/ltx"
)

// The traces in testdata/traces were recorded from real SQLite writing
// through a real mount (integration.TestRecordTraces): every open, write,
// truncate, sync, close and unlink, in each journal mode.

func loadTrace(t *testing.T, mode string) []TraceOp {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "traces", mode+".jsonl.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var ops []TraceOp
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var op TraceOp
		if err := json.Unmarshal(sc.Bytes(), &op); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, op)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ops
}

var traceModes = []string{"WAL", "DELETE", "TRUNCATE", "PERSIST"}

func openTestStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Config{DataDir: dir, PollInterval: time.Hour, IdlePollInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return s
}

// replay applies ops to s, failing the test on an error.
func replay(t *testing.T, s *Store, ops []TraceOp) *Replayer {
	t.Helper()
	r := NewReplayer(s)
	for i, op := range ops {
		if err := r.Apply(op); err != nil {
			t.Fatalf("op %d (%s %s): %v", i, op.Op, op.Name, err)
		}
	}
	return r
}

// TestTrace_Replay replays each recorded trace in full and requires the
// chain to equal the database SQLite left behind.
func TestTrace_Replay(t *testing.T) {
	for _, mode := range traceModes {
		t.Run(mode, func(t *testing.T) {
			ops := loadTrace(t, mode)
			dir := t.TempDir()
			s := openTestStore(t, dir)
			replay(t, s, ops).CloseAll()
			want := oracleImage(t, s.Root(), "trace.db")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			requireChainEquals(t, dir, "trace.db", want)
		})
	}
}

// TestTrace_CrashAtEveryOperation cuts each trace after every operation,
// abandons the store as a SIGKILL would, and recovers it. The chain must
// then hold exactly what SQLite considers committed in the files the crash
// left: SQLite itself, opening a copy of them, is the oracle.
func TestTrace_CrashAtEveryOperation(t *testing.T) {
	for _, mode := range traceModes {
		t.Run(mode, func(t *testing.T) {
			ops := loadTrace(t, mode)
			stride := 1
			if testing.Short() {
				stride = 7
			}
			for k := 1; k <= len(ops); k += stride {
				dir := t.TempDir()
				s := openTestStore(t, dir)
				r := replay(t, s, ops[:k])
				s.crash()
				for _, f := range r.files {
					f.f.Close()
				}
				if !fileExists(filepath.Join(s.Root(), "trace.db")) {
					continue
				}
				want := oracleImage(t, s.Root(), "trace.db")
				s2 := openTestStore(t, dir)
				if err := s2.Close(); err != nil {
					t.Fatalf("crash after op %d: recover: %v", k, err)
				}
				if want == nil {
					continue // nothing committed yet
				}
				if !requireChainEqualsAt(t, dir, "trace.db", want, k) {
					return
				}
			}
		})
	}
}

// oracleImage copies a database and its journal or WAL to a scratch
// folder, lets SQLite open it (rolling back a hot journal, recovering the
// WAL), checkpoints it, and returns the resulting file: the database as
// SQLite sees it committed. It returns nil for an empty database.
func oracleImage(t *testing.T, root, name string) []byte {
	t.Helper()
	tmp := t.TempDir()
	for _, suffix := range []string{"", "-journal", "-wal"} {
		b, err := os.ReadFile(filepath.Join(root, name+suffix))
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(tmp, name+suffix), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(tmp, name)
	db, err := sql.Open("sqlite", "file:"+p)
	if err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	if strings.EqualFold(mode, "wal") {
		if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := db.QueryRow(`PRAGMA page_count`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 || len(b) == 0 {
		return nil
	}
	ps := int(dbHeaderPageSize(b))
	if len(b) > n*ps {
		b = b[:n*ps]
	}
	return b
}

func requireChainEquals(t *testing.T, dir, name string, want []byte) {
	t.Helper()
	requireChainEqualsAt(t, dir, name, want, -1)
}

func requireChainEqualsAt(t *testing.T, dir, name string, want []byte, op int) bool {
	t.Helper()
	out := filepath.Join(t.TempDir(), "replay")
	pos, err := ReplayChain(filepath.Join(dir, name, "ltx", "0"), out, true)
	if err != nil {
		t.Errorf("crash after op %d: replay: %v", op, err)
		return false
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("crash after op %d: chain (TXID %s) replays to %d bytes, SQLite sees %d committed bytes; first difference in page %d",
			op, pos.TXID, len(got), len(want), diffPage(got, want))
		return false
	}
	return true
}

func diffPage(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i/4096 + 1
		}
	}
	return min(len(a), len(b))/4096 + 1
}

var (
	_ = io.EOF
	_ = ltx.Version
)
