package mount

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/pagefs/pagefs/ltx"
)

func TestOpen_ErrDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	defer s.Close()
	if _, err := Open(Config{DataDir: dir}); !errors.Is(err, ErrDataDirLocked) {
		t.Fatalf("second Open of %s: got %v, want ErrDataDirLocked", dir, err)
	}
}

func TestClassify(t *testing.T) {
	for name, want := range map[string]struct {
		kind Kind
		db   string
	}{
		"app.db":         {KindDB, "app.db"},
		"app.db-journal": {KindJournal, "app.db"},
		"sub/x.db-wal":   {KindWAL, "sub/x.db"},
		"x-shm":          {KindSHM, "x"},
		"notes.txt":      {KindDB, "notes.txt"},
	} {
		if k, db := Classify(name); k != want.kind || db != want.db {
			t.Errorf("Classify(%q) = %v %q, want %v %q", name, k, db, want.kind, want.db)
		}
	}
}

// TestRetention keeps the newest files, never what a backup lacks, and
// leaves a chain whose head the next start finds.
func TestRetention(t *testing.T) {
	dir := t.TempDir()
	floor := uint64(10)
	s, err := Open(Config{DataDir: dir, PollInterval: time.Hour, IdlePollInterval: time.Hour, Retention: time.Nanosecond, RetentionCount: 3,
		RetentionFloor: func(string) uint64 { return floor }})
	if err != nil {
		t.Fatal(err)
	}
	replay(t, s, loadTrace(t, "DELETE")).CloseAll()
	db := s.DB("trace.db")
	head := db.Pos().TXID
	if head < 20 {
		t.Fatalf("trace produced only %d transactions", head)
	}
	db.applyRetention()
	files, _ := os.ReadDir(db.LTXDir())
	if first, _, _ := ltx.ParseFilename(files[0].Name()); first != 11 {
		t.Fatalf("oldest file left is TXID %s, want 11: files above the backup floor (10) must stay", first)
	}
	floor = uint64(head)
	db.applyRetention()
	if files, _ = os.ReadDir(db.LTXDir()); len(files) != 3 {
		t.Fatalf("%d files left, want the newest 3", len(files))
	}
	s.Close()
	s = openTestStore(t, dir)
	defer s.Close()
	if got := s.DB("trace.db").Pos().TXID; got != head {
		t.Fatalf("head after restart %s, want %s", got, head)
	}
}

// TestWriteAllowed_WriteDeadline: a primary whose lease may have lapsed
// refuses the application's database writes as a replica does, even though
// nothing has demoted it yet (its process was paused past the deadline);
// its -shm stays writable for readers, and a renewal lifts the refusal.
func TestWriteAllowed_WriteDeadline(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	if !s.WriteAllowed("app.db-journal") {
		t.Fatal("a primary without a deadline refuses a journal")
	}
	s.SetWriteDeadline(time.Now().Add(time.Hour))
	if !s.WriteAllowed("app.db-journal") || !s.WriteAllowed("app.db-wal") {
		t.Fatal("a primary before its deadline refuses writes")
	}
	s.SetWriteDeadline(time.Now().Add(-time.Millisecond))
	for _, name := range []string{"app.db-journal", "app.db-wal", PrimaryFile} {
		if s.WriteAllowed(name) {
			t.Errorf("past the deadline, %s is still writable", name)
		}
	}
	if !s.WriteAllowed("app.db-shm") {
		t.Error("past the deadline, readers' -shm is refused")
	}
	s.SetWriteDeadline(time.Now().Add(time.Hour)) // renewed
	if !s.WriteAllowed("app.db-journal") {
		t.Fatal("a renewed primary still refuses writes")
	}
	s.SetWriteDeadline(time.Time{})
	if !s.WriteAllowed("app.db-wal") {
		t.Fatal("the zero deadline does not lift the limit")
	}
}
