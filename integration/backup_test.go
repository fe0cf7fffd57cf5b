package integration

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/replicate"
	"github.com/pagefs/pagefs/replicate/s3/miniotest"
)

// minioStart starts a MinIO for the test and puts its credentials in the
// environment, where pagefs (in this process or a child) and Litestream
// find them through the standard AWS chain.
func minioStart(t testing.TB) *miniotest.Server {
	t.Helper()
	srv := miniotest.Start(t)
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return srv
}

// backupHead returns the newest TXID of a database's local chain.
func backupHead(t testing.TB, data, db string) ltx.TXID {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(data, db, "ltx", "0"))
	if err != nil {
		t.Fatal(err)
	}
	var head ltx.TXID
	for _, e := range ents {
		if _, max, err := ltx.ParseFilename(e.Name()); err == nil && max > head {
			head = max
		}
	}
	return head
}

// backupHeld returns the newest TXID the backup at url holds of db.
func backupHeld(t testing.TB, url, db string) ltx.TXID {
	t.Helper()
	u, err := replicate.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	d, err := replicate.NewDestination(u)
	if err != nil {
		t.Fatal(err)
	}
	var held ltx.TXID
	for level := 0; level <= replicate.SnapshotLevel; level++ {
		a, err := replicate.ListLevel(context.Background(), d.Client(db), level, 0)
		if err != nil {
			return 0 // unreachable for now
		}
		if n := len(a); n > 0 && a[n-1].MaxTXID > held {
			held = a[n-1].MaxTXID
		}
	}
	return held
}

// backupWait waits until the backup at url holds txid of db.
func backupWait(t testing.TB, url, db string, txid ltx.TXID) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for backupHeld(t, url, db) < txid {
		if time.Now().After(deadline) {
			t.Fatalf("backup %s holds %s TXID %s, want %s", url, db, backupHeld(t, url, db), txid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// backupCLI runs the pagefs binary and returns its output, failing the
// test if it fails.
func backupCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(pagefsBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pagefs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// backupRestore restores url/db (with extra flags) to a new file and
// returns its path.
func backupRestore(t testing.TB, url, db string, flags ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "restored-"+filepath.Base(db))
	backupCLI(t, append(append([]string{"restore", "-o", out}, flags...), dbURL(url, db))...)
	return out
}

// dbURL inserts a database name into a backup URL, before its query.
func dbURL(url, db string) string {
	base, query, ok := strings.Cut(url, "?")
	u := strings.TrimSuffix(base, "/") + "/" + db
	if ok {
		u += "?" + query
	}
	return u
}

// backupSameBytes requires two database files to be equal page for page.
func backupSameBytes(t testing.TB, gotPath, wantPath string) {
	t.Helper()
	got, err := os.ReadFile(gotPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(wantPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s (%d bytes) differs from %s (%d bytes) at page %d", gotPath, len(got), wantPath, len(want), firstDiffPage(got, want, 4096))
	}
}

// backupInsert inserts n rows, one transaction each, and returns the last id.
func backupInsert(t testing.TB, db *sql.DB, n int) int64 {
	t.Helper()
	var id int64
	for i := 0; i < n; i++ {
		res, err := db.Exec(`INSERT INTO t(v) VALUES (randomblob(300))`)
		if err != nil {
			t.Fatalf("insert: %v", err)
		}
		id, _ = res.LastInsertId()
	}
	return id
}

// backupRows counts the rows of t in a database file outside the mount.
func backupRows(t testing.TB, path string) int64 {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if s := queryString(t, db, "PRAGMA integrity_check"); s != "ok" {
		t.Fatalf("%s: integrity_check: %s", path, s)
	}
	return queryInt(t, db, "SELECT count(*) FROM t")
}

// backupRestoreMatchesLive writes through a mount backed up to url,
// restores the bucket and requires the result to equal the live database.
func backupRestoreMatchesLive(t *testing.T, url string) {
	p := startMountProc(t, "", "--backup", url)
	db := openDB(t, p.Path("app.db"), "journal_mode(WAL)", "synchronous(NORMAL)")
	exec1(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
	backupInsert(t, db, 300)
	exec1(t, db, `DELETE FROM t WHERE id % 3 = 0`) // frees pages: the file shrinks later
	exec1(t, db, `VACUUM`)
	backupInsert(t, db, 50)
	db.Close() // the last close checkpoints: the file is the whole database
	head := backupHead(t, p.Data, "app.db")
	backupWait(t, url, "app.db", head)
	restored := backupRestore(t, url, "app.db")
	backupSameBytes(t, restored, filepath.Join(p.Data, ".pagefs", "files", "app.db"))
	if out := backupCLI(t, "verify", dbURL(url, "app.db")); !strings.Contains(out, "app.db: ok") {
		t.Fatalf("verify: %s", out)
	}
}

func TestBackup_FileRestoreMatchesLive(t *testing.T) {
	backupRestoreMatchesLive(t, "file://"+t.TempDir())
}

func TestBackup_S3RestoreMatchesLive(t *testing.T) {
	requireFUSE(t)
	srv := minioStart(t)
	backupRestoreMatchesLive(t, srv.URL(srv.NewBucket(t, "live"), "prod"))
}

func TestBackup_PointInTime(t *testing.T) {
	requireFUSE(t)
	srv := minioStart(t)
	url := srv.URL(srv.NewBucket(t, "pitr"), "")
	p := startMountProc(t, "", "--backup", url)
	db := openDB(t, p.Path("app.db"), "journal_mode(DELETE)")
	exec1(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
	type point struct {
		txid ltx.TXID
		at   time.Time // between this commit and the next
		rows int64
	}
	var points []point
	for i := 1; i <= 12; i++ {
		backupInsert(t, db, 1) // a rollback-journal commit is captured before it returns
		time.Sleep(15 * time.Millisecond)
		points = append(points, point{backupHead(t, p.Data, "app.db"), time.Now(), int64(i)})
		time.Sleep(15 * time.Millisecond)
	}
	backupWait(t, url, "app.db", points[len(points)-1].txid)
	for _, pt := range []point{points[0], points[5], points[11]} {
		byTXID := backupRestore(t, url, "app.db", "--txid", ltx.TXID(pt.txid).String())
		if n := backupRows(t, byTXID); n != pt.rows {
			t.Fatalf("restore to TXID %s: %d rows, want %d", pt.txid, n, pt.rows)
		}
		byTime := backupRestore(t, url, "app.db", "--timestamp", pt.at.UTC().Format(time.RFC3339Nano))
		backupSameBytes(t, byTime, byTXID)
	}
}

func TestBackup_FreshNodeRemountsFromBucket(t *testing.T) {
	requireFUSE(t)
	srv := minioStart(t)
	url := srv.URL(srv.NewBucket(t, "remount"), "cluster")
	a := startMountProc(t, "", "--backup", url)
	db := openDB(t, a.Path("app.db"), "journal_mode(WAL)")
	exec1(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
	backupInsert(t, db, 100)
	os.MkdirAll(a.Path("sub"), 0o755)
	other := openDB(t, a.Path("sub/other.db"))
	exec1(t, other, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
	backupInsert(t, other, 7)
	db.Close()
	other.Close()
	a.Stop()
	want := filepath.Join(a.Data, ".pagefs", "files", "app.db")

	// A new node with an empty data directory serves the bucket's databases.
	b := startMountProc(t, "", "--backup", url)
	backupSameBytes(t, filepath.Join(b.Data, ".pagefs", "files", "app.db"), want)
	db = openDB(t, b.Path("app.db"), "journal_mode(WAL)")
	if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 100 {
		t.Fatalf("remounted app.db has %d rows, want 100", n)
	}
	other = openDB(t, b.Path("sub/other.db"))
	if n := queryInt(t, other, "SELECT count(*) FROM t"); n != 7 {
		t.Fatalf("remounted sub/other.db has %d rows, want 7", n)
	}
	// It carries on where the bucket ended.
	backupInsert(t, db, 20)
	db.Close()
	other.Close()
	head := backupHead(t, b.Data, "app.db")
	backupWait(t, url, "app.db", head)
	if n := backupRows(t, backupRestore(t, url, "app.db")); n != 120 {
		t.Fatalf("bucket restores %d rows after the remounted node wrote, want 120", n)
	}
	b.Stop()

	// The first node's data directory is now behind the bucket: it
	// catches up before serving.
	a.Start()
	db = openDB(t, a.Path("app.db"))
	if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 120 {
		t.Fatalf("node behind the bucket has %d rows after catching up, want 120", n)
	}
	db.Close()
}

func TestBackup_DivergedDataDirIsRefused(t *testing.T) {
	requireFUSE(t)
	srv := minioStart(t)
	url := srv.URL(srv.NewBucket(t, "diverge"), "")
	a := startMountProc(t, "", "--backup", url)
	db := openDB(t, a.Path("app.db"))
	exec1(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
	backupInsert(t, db, 3)
	db.Close()
	backupWait(t, url, "app.db", backupHead(t, a.Data, "app.db"))
	a.Stop()

	// Another data directory with its own app.db, never backed up.
	b := startMountProc(t, "")
	db = openDB(t, b.Path("app.db"))
	exec1(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB, w TEXT)`)
	backupInsert(t, db, 3)
	db.Close()
	b.Stop()
	out, err := exec.Command(pagefsBin, "mount", "--data", b.Data, "--backup", url, t.TempDir()).CombinedOutput()
	if err == nil {
		t.Fatalf("pagefs mounted a data directory that diverged from its backup:\n%s", out)
	}
	for _, want := range []string{"database app.db", "differ at TXID", "To keep the backup's version", "To keep the local version"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("refusal does not say %q:\n%s", want, out)
		}
	}
}

// TestBackup_AddedAfterLocalRetention adds a backup to a data directory
// whose local retention already removed the start of the chain: the backup
// starts from a snapshot of the live database.
func TestBackup_AddedAfterLocalRetention(t *testing.T) {
	p := startMountProc(t, "", "--retention", "1ns", "--retention-count", "1")
	db := openDB(t, p.Path("app.db"), "journal_mode(DELETE)")
	exec1(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
	backupInsert(t, db, 200)
	db.Close()
	first := filepath.Join(p.Data, "app.db", "ltx", "0", ltx.FormatFilename(1, 1))
	deadline := time.Now().Add(60 * time.Second)
	for _, err := os.Stat(first); err == nil; _, err = os.Stat(first) {
		if time.Now().After(deadline) {
			t.Fatal("local retention kept TXID 1; the test needs it gone")
		}
		time.Sleep(50 * time.Millisecond) // retention runs about once a second
	}
	p.Stop()
	url := "file://" + t.TempDir()
	p.args = []string{"--backup", url}
	p.Start()
	backupWait(t, url, "app.db", backupHead(t, p.Data, "app.db"))
	restored := backupRestore(t, url, "app.db")
	backupSameBytes(t, restored, filepath.Join(p.Data, ".pagefs", "files", "app.db"))
}
