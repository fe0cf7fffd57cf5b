package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestPOSIX_Tree: everything that is not a database behaves as a plain
// directory tree, because SQLite's tools and users rely on it.
func TestPOSIX_Tree(t *testing.T) {
	m := newMount(t, "")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Subfolders and any legal file name.
	odd := "sp ace, ünïcødé, 'quote\", tab\t.txt"
	must(os.MkdirAll(m.Path("a/b/c"), 0o755))
	must(os.WriteFile(m.Path("a/b/c/"+odd), []byte("hello"), 0o644))
	if b, err := os.ReadFile(m.Path("a/b/c/" + odd)); err != nil || string(b) != "hello" {
		t.Fatalf("read back odd name: %q %v", b, err)
	}
	// Rename of plain files and folders.
	must(os.Rename(m.Path("a/b/c/"+odd), m.Path("a/renamed.txt")))
	must(os.Rename(m.Path("a/b"), m.Path("a/b2")))
	if _, err := os.Stat(m.Path("a/b2/c")); err != nil {
		t.Fatal(err)
	}
	// Unlink of an open file: it stays readable and writable until closed.
	f, err := os.OpenFile(m.Path("open.txt"), os.O_RDWR|os.O_CREATE, 0o644)
	must(err)
	_, err = f.WriteString("still here")
	must(err)
	must(os.Remove(m.Path("open.txt")))
	buf := make([]byte, 10)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "still here" {
		t.Fatalf("read unlinked open file: %q %v", buf, err)
	}
	_, err = f.WriteAt([]byte("!"), 10)
	must(err)
	must(f.Close())
	if _, err := os.Stat(m.Path("open.txt")); !os.IsNotExist(err) {
		t.Fatalf("unlinked file still visible: %v", err)
	}
	// Symlinks, relative and absolute.
	must(os.Symlink("renamed.txt", m.Path("a/link")))
	if b, err := os.ReadFile(m.Path("a/link")); err != nil || string(b) != "hello" {
		t.Fatalf("read through symlink: %q %v", b, err)
	}
	if target, err := os.Readlink(m.Path("a/link")); err != nil || target != "renamed.txt" {
		t.Fatalf("readlink: %q %v", target, err)
	}
	// Sparse files: a hole reads as zeros and takes no space.
	sp, err := os.Create(m.Path("sparse"))
	must(err)
	_, err = sp.WriteAt([]byte("end"), 64<<20)
	must(err)
	must(sp.Close())
	fi, err := os.Stat(m.Path("sparse"))
	must(err)
	if fi.Size() != 64<<20+3 {
		t.Fatalf("sparse size %d", fi.Size())
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Blocks*512 > 1<<20 {
		t.Fatalf("sparse file uses %d bytes", st.Blocks*512)
	}
	zero := make([]byte, 4096)
	sp, err = os.Open(m.Path("sparse"))
	must(err)
	got := make([]byte, 4096)
	_, err = sp.ReadAt(got, 32<<20)
	must(err)
	sp.Close()
	if !bytes.Equal(got, zero) {
		t.Fatal("hole does not read as zeros")
	}
	// Truncate, append, chmod.
	must(os.Truncate(m.Path("a/renamed.txt"), 2))
	af, err := os.OpenFile(m.Path("a/renamed.txt"), os.O_APPEND|os.O_WRONLY, 0)
	must(err)
	_, err = af.WriteString("llo!")
	must(err)
	must(af.Close())
	if b, _ := os.ReadFile(m.Path("a/renamed.txt")); string(b) != "hello!" {
		t.Fatalf("after truncate and append: %q", b)
	}
	must(os.Chmod(m.Path("a/renamed.txt"), 0o600))
	if fi, _ := os.Stat(m.Path("a/renamed.txt")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// Directory listing and removal.
	ents, err := os.ReadDir(m.Path("a"))
	must(err)
	if len(ents) != 3 {
		t.Fatalf("a/ holds %d entries, want 3", len(ents))
	}
	must(os.RemoveAll(m.Path("a")))
	// Nothing here became a database.
	if ents, _ := os.ReadDir(m.Data); len(ents) != 1 {
		t.Fatalf("plain files left state in the data directory: %v", ents)
	}
}

// TestSQLite_ManyDatabasesAttachedMmapTemp: several databases in one mount
// and in subfolders, ATTACH, mmap reads, and temp files, all captured.
func TestSQLite_ManyDatabasesAttachedMmapTemp(t *testing.T) {
	m := newMount(t, "")
	if err := os.MkdirAll(m.Path("tenants/eu"), 0o755); err != nil {
		t.Fatal(err)
	}
	names := []string{"main.db", "tenants/eu/a.db", "tenants/eu/b.db"}
	db := openDB(t, m.Path(names[0]), "journal_mode(WAL)", "mmap_size(268435456)", "temp_store(FILE)")
	db.SetMaxOpenConns(1)
	exec1(t, db, `ATTACH DATABASE '`+m.Path(names[1])+`' AS a`)
	exec1(t, db, `ATTACH DATABASE '`+m.Path(names[2])+`' AS b`)
	exec1(t, db, `PRAGMA b.journal_mode=DELETE`)
	for _, schema := range []string{"main", "a", "b"} {
		exec1(t, db, `CREATE TABLE `+schema+`.t (id INTEGER PRIMARY KEY, v TEXT)`)
	}
	// One transaction across three databases.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500; i++ {
		for _, schema := range []string{"main", "a", "b"} {
			if _, err := tx.Exec(`INSERT INTO ` + schema + `.t (v) VALUES (hex(randomblob(100)))`); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// A sort big enough to spill to a temp file.
	if n := queryInt(t, db, `SELECT count(*) FROM (SELECT v FROM t UNION SELECT v FROM a.t UNION SELECT v FROM b.t ORDER BY 1)`); n != 1500 {
		t.Fatalf("union of three databases: %d rows", n)
	}
	if n := queryInt(t, db, `SELECT sum(length(v)) FROM t`); n != 500*200 {
		t.Fatalf("mmap read: %d", n)
	}
	db.Close()
	for _, name := range names {
		m.verifyChain(name)
	}
	// The shell sees the same data.
	if out := sqlite3(t, m.Path(names[2]), "SELECT count(*) FROM t;"); out != "500" {
		t.Fatalf("sqlite3 shell: %q", out)
	}
	m.verifyChain(names[2])
	if _, err := os.Stat(filepath.Join(m.Data, "tenants", "eu", "a.db", "ltx", "0")); err != nil {
		t.Fatalf("chain of a database in a subfolder: %v", err)
	}
}

// TestSQLite_ImportByCopy: a database copied into the mount with cp (no
// journal, a fresh file) is captured as one complete image.
func TestSQLite_ImportByCopy(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src.db")
	sdb := openDB(t, src)
	exec1(t, sdb, `CREATE TABLE t (v)`)
	exec1(t, sdb, `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 2000) INSERT INTO t SELECT randomblob(1000) FROM c`)
	sdb.Close()
	m := newMount(t, "")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.Path("copy.db"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	m.verifyChain("copy.db")
	db := openDB(t, m.Path("copy.db"))
	if n := queryInt(t, db, `SELECT count(*) FROM t`); n != 2000 {
		t.Fatalf("%d rows in the copy", n)
	}
	exec1(t, db, `VACUUM INTO '`+m.Path("vacuumed.db")+`'`)
	db.Close()
	m.verifyChain("copy.db")
	m.verifyChain("vacuumed.db")
}
