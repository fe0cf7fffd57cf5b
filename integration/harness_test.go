package integration

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/pagefs/pagefs/fuse"
	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/mount"
)

// pagefsBin is the pagefs binary built once for tests that run it as a
// separate process (to SIGKILL it).
var pagefsBin string

func TestMain(m *testing.M) {
	if os.Getenv(writerEnv) != "" {
		os.Exit(writerMain())
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pagefs-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	pagefsBin = filepath.Join(dir, "pagefs")
	cmd := exec.Command("go", "build", "-o", pagefsBin, "github.com/pagefs/pagefs/cmd/pagefs")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build pagefs:", err)
		return 1
	}
	return m.Run()
}

// requireFUSE skips the test when FUSE cannot be mounted here, or fails it
// in CI, where a skipped integration test would hide a broken setup.
func requireFUSE(t testing.TB) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "integration tests mount FUSE and must run as root"
	} else if _, err := os.Stat("/dev/fuse"); err != nil {
		reason = "no /dev/fuse on this machine"
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: FUSE is required)", reason)
	}
	t.Skip(reason)
}

// testMount is a pagefs mount served by this test process.
type testMount struct {
	t     testing.TB
	Dir   string // mountpoint
	Data  string // data directory
	store *mount.Store
	srv   *fuse.Server
	log   *lockedBuffer
}

// newMount mounts a fresh data directory, or data if given.
func newMount(t testing.TB, data string) *testMount {
	t.Helper()
	requireFUSE(t)
	if data == "" {
		data = t.TempDir()
	}
	m := &testMount{t: t, Dir: t.TempDir(), Data: data, log: &lockedBuffer{}}
	m.start()
	t.Cleanup(m.Close)
	return m
}

func (m *testMount) start() {
	m.t.Helper()
	logger := slog.New(slog.NewTextHandler(m.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store, err := mount.Open(mount.Config{DataDir: m.Data, Logger: logger})
	if err != nil {
		m.t.Fatalf("open store: %v", err)
	}
	srv, err := fuse.Mount(m.Dir, store, fuse.Options{Logger: logger})
	if err != nil {
		store.Close()
		m.t.Fatalf("mount: %v", err)
	}
	m.store, m.srv = store, srv
}

// Close unmounts and closes the store. Connections must be closed first.
func (m *testMount) Close() {
	if m.srv == nil {
		return
	}
	var err error
	for i := 0; i < 50; i++ {
		if err = m.srv.Unmount(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		m.t.Errorf("unmount %s: %v", m.Dir, err)
		_ = syscall.Unmount(m.Dir, syscall.MNT_DETACH)
	}
	if err := m.store.Close(); err != nil {
		m.t.Errorf("close store: %v", err)
	}
	m.srv = nil
	if m.t.Failed() {
		m.t.Logf("pagefs log:\n%s", m.log.tail(60))
	}
}

// Restart unmounts and mounts the same data directory again.
func (m *testMount) Restart() {
	m.Close()
	m.start()
}

func (m *testMount) Path(name string) string { return filepath.Join(m.Dir, name) }

// openDB opens a database under the mount with the given pragmas, e.g.
// "journal_mode(WAL)".
func openDB(t testing.TB, path string, pragmas ...string) *sql.DB {
	t.Helper()
	dsn := "file:" + path
	sep := "?"
	for _, p := range append([]string{"busy_timeout(10000)"}, pragmas...) {
		dsn += sep + "_pragma=" + p
		sep = "&"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func exec1(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func queryInt(t testing.TB, db *sql.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func queryString(t testing.TB, db *sql.DB, q string) string {
	t.Helper()
	var s string
	if err := db.QueryRow(q).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}

// verifyChain replays the database's chain onto nothing and requires the
// result to equal the database file byte for byte. The caller must have
// closed every connection (so SQLite checkpointed and removed the WAL), or
// checkpointed with TRUNCATE, so that the file holds the whole database.
func (m *testMount) verifyChain(name string) {
	m.t.Helper()
	pos := replayEquals(m.t, m.Data, name, true)
	if db := m.store.DB(name); db != nil && db.Pos() != pos {
		m.t.Fatalf("%s: store head %v, chain replays to %v", name, db.Pos(), pos)
	}
}

// replayEquals replays the chain of database name in the data directory
// onto nothing and requires the result to equal the backing database file
// byte for byte. checkEach also checks every file's post-apply checksum
// against the image it produces. It returns the chain's head.
func replayEquals(t testing.TB, data, name string, checkEach bool) ltx.Pos {
	t.Helper()
	out := filepath.Join(t.TempDir(), "replay.db")
	pos, err := mount.ReplayChain(filepath.Join(data, name, "ltx", "0"), out, checkEach)
	if err != nil {
		t.Fatalf("replay chain of %s: %v", name, err)
	}
	want, err := os.ReadFile(filepath.Join(data, ".pagefs", "files", name))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		keepFailed(t, data)
		t.Fatalf("%s: chain (TXID %s) replays to %d bytes that differ from the %d-byte database at page %d",
			name, pos.TXID, len(got), len(want), firstDiffPage(got, want, 4096))
	}
	return pos
}

// keepFailed copies a data directory to $PAGEFS_KEEP_FAILED/<test>, if set,
// so a failure can be examined after the test's folders are gone.
func keepFailed(t testing.TB, data string) {
	dst := os.Getenv("PAGEFS_KEEP_FAILED")
	if dst == "" {
		return
	}
	dst = filepath.Join(dst, strings.ReplaceAll(t.Name(), "/", "_"))
	if out, err := exec.Command("cp", "-a", data, dst).CombinedOutput(); err != nil {
		t.Logf("keep %s: %v %s", data, err, out)
		return
	}
	t.Logf("data directory kept at %s", dst)
}

func firstDiffPage(a, b []byte, ps int) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i/ps + 1
		}
	}
	return min(len(a), len(b))/ps + 1
}

// sqlite3 runs the sqlite3 shell on a database with the given SQL.
func sqlite3(t testing.TB, path, sqlText string) string {
	t.Helper()
	if _, err := exec.LookPath("sqlite3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sqlite3 shell not installed (scripts/deps.sh installs it)")
		}
		t.Skip("sqlite3 shell not installed")
	}
	cmd := exec.Command("sqlite3", "-batch", "-bail", path)
	cmd.Stdin = strings.NewReader(sqlText)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v\n%s", path, err, out)
	}
	return strings.TrimSpace(string(out))
}

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) tail(n int) string {
	lines := strings.Split(b.String(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// readLines returns the lines of a file, or nil if it does not exist.
func readLines(t testing.TB, p string) []string {
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

var _ = context.Background
var _ = io.EOF

// sqlite3Fails runs the sqlite3 shell and returns its output, requiring it
// to fail.
func sqlite3Fails(t testing.TB, path, sqlText string) string {
	t.Helper()
	cmd := exec.Command("sqlite3", "-batch", "-bail", path)
	cmd.Stdin = strings.NewReader(sqlText)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("sqlite3 %s succeeded:\n%s", sqlText, out)
	}
	return string(out)
}
