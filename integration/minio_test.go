package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// TestMinIO_KilledDuringUploads cuts the bucket off while the application
// keeps committing: the mount keeps serving, logs the outage once, and
// once MinIO is back the backup catches up without losing anything.
func TestMinIO_KilledDuringUploads(t *testing.T) {
	requireFUSE(t)
	srv := minioStart(t)
	url := srv.URL(srv.NewBucket(t, "outage"), "")
	p := startMountProc(t, "", "--backup", url)
	db := openDB(t, p.Path("app.db"), "journal_mode(WAL)", "synchronous(NORMAL)")
	exec1(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
	backupInsert(t, db, 50)
	backupWait(t, url, "app.db", backupHead(t, p.Data, "app.db"))

	srv.Kill()
	backupInsert(t, db, 200) // commits do not wait for the bucket
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(readFile(p.Log), "backup destination unreachable") {
		if time.Now().After(deadline) {
			t.Fatal("no upload failed while MinIO was down")
		}
		backupInsert(t, db, 1)
		time.Sleep(50 * time.Millisecond)
	}
	rows := queryInt(t, db, "SELECT count(*) FROM t")
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	backupInsert(t, db, 50)
	db.Close()
	backupWait(t, url, "app.db", backupHead(t, p.Data, "app.db"))
	restored := backupRestore(t, url, "app.db")
	if n := backupRows(t, restored); n != rows+50 {
		t.Fatalf("restored %d rows after the outage, want %d", n, rows+50)
	}
	backupSameBytes(t, restored, filepath.Join(p.Data, ".pagefs", "files", "app.db"))

	down := strings.Count(readFile(p.Log), "backup destination unreachable")
	up := strings.Count(readFile(p.Log), "backup destination reachable again")
	if down != 1 || up != 1 {
		t.Fatalf("the outage was logged %d times and the recovery %d times, want once each", down, up)
	}
}
