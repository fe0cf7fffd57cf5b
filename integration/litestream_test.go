package integration

import (
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// litestreamBin returns the Litestream 0.5 binary built by scripts/deps.sh,
// skipping the test without it (failing it when CI=true).
func litestreamBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PAGEFS_LITESTREAM"); p != "" {
		return p
	}
	if p, err := exec.LookPath("litestream"); err == nil {
		return p
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, ".cache", "pagefs", "bin", "litestream")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true and litestream is missing: run scripts/deps.sh")
	}
	t.Skip("litestream not installed: run scripts/deps.sh (go install github.com/benbjohnson/litestream/cmd/litestream@v0.5.18)")
	return ""
}

// litestreamCmd runs Litestream with the test's AWS credentials but
// without AWS_CA_BUNDLE, which its S3 client cannot combine with its own
// HTTP client ("unable to add custom RootCAs HTTPClient").
func litestreamCmd(t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.Command(litestreamBin(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

func litestreamRestore(t *testing.T, url string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "litestream-restored.db")
	if b, err := litestreamCmd(t, "restore", "-o", out, url).CombinedOutput(); err != nil {
		t.Fatalf("litestream restore %s: %v\n%s", url, err, b)
	}
	return out
}

func TestLitestream_RestoresPagefsBucket(t *testing.T) {
	requireFUSE(t)
	litestreamBin(t)
	srv := minioStart(t)
	url := srv.URL(srv.NewBucket(t, "pf2ls"), "pagefs")
	p := startMountProc(t, "", "--backup", url)
	db := openDB(t, p.Path("app.db"), "journal_mode(WAL)")
	exec1(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
	backupInsert(t, db, 200)
	exec1(t, db, `DELETE FROM t WHERE id > 150`)
	db.Close()
	backupWait(t, url, "app.db", backupHead(t, p.Data, "app.db"))
	restored := litestreamRestore(t, dbURL(url, "app.db"))
	backupSameBytes(t, restored, filepath.Join(p.Data, ".pagefs", "files", "app.db"))
}

func TestLitestream_PagefsRestoresLitestreamBucket(t *testing.T) {
	requireFUSE(t)
	litestreamBin(t)
	srv := minioStart(t)
	url := srv.URL(srv.NewBucket(t, "ls2pf"), "litestream")
	src := filepath.Join(t.TempDir(), "app.db")
	db, err := sql.Open("sqlite", "file:"+src+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec1(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
	backupInsert(t, db, 100)

	logf, _ := os.Create(filepath.Join(t.TempDir(), "litestream.log"))
	defer logf.Close()
	ls := litestreamCmd(t, "replicate", src, dbURL(url, "app.db"))
	ls.Stdout, ls.Stderr = logf, logf
	if err := ls.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ { // several syncs, so several level-0 files
		backupInsert(t, db, 50)
		time.Sleep(1200 * time.Millisecond)
	}
	_ = ls.Process.Signal(syscall.SIGTERM) // Litestream syncs what is left on exit
	if err := ls.Wait(); err != nil {
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("litestream replicate: %v\n%s", err, b)
	}

	want := litestreamRestore(t, dbURL(url, "app.db"))
	got := backupRestore(t, url, "app.db")
	backupSameBytes(t, got, want)
	if n := backupRows(t, got); n != 300 {
		t.Fatalf("pagefs restored %d rows from Litestream's bucket, want 300", n)
	}
	if out := backupCLI(t, "verify", dbURL(url, "app.db")); !strings.Contains(out, "app.db: ok") {
		t.Fatalf("pagefs verify of Litestream's bucket: %s", out)
	}

	// Remounting against Litestream's bucket serves its database, and what
	// pagefs then adds to the bucket both tools restore.
	p := startMountProc(t, "", "--backup", url)
	mdb := openDB(t, p.Path("app.db"), "journal_mode(WAL)")
	if n := queryInt(t, mdb, "SELECT count(*) FROM t"); n != 300 {
		t.Fatalf("pagefs mounted Litestream's bucket with %d rows, want 300", n)
	}
	backupInsert(t, mdb, 50)
	mdb.Close()
	backupWait(t, url, "app.db", backupHead(t, p.Data, "app.db"))
	live := filepath.Join(p.Data, ".pagefs", "files", "app.db")
	backupSameBytes(t, backupRestore(t, url, "app.db"), live)
	backupSameBytes(t, litestreamRestore(t, dbURL(url, "app.db")), live)
}

// TestLitestream_RestoresPagefsFolder checks the folder layout the same way.
func TestLitestream_RestoresPagefsFolder(t *testing.T) {
	requireFUSE(t)
	litestreamBin(t)
	url := "file://" + t.TempDir()
	p := startMountProc(t, "", "--backup", url)
	db := openDB(t, p.Path("app.db"), "journal_mode(WAL)")
	exec1(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
	backupInsert(t, db, 120)
	db.Close()
	backupWait(t, url, "app.db", backupHead(t, p.Data, "app.db"))
	restored := litestreamRestore(t, url+"/app.db")
	backupSameBytes(t, restored, filepath.Join(p.Data, ".pagefs", "files", "app.db"))
}
