package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCapture_RefusesUncapturableJournalModes: MEMORY and OFF leave no
// journal that marks a commit, so a write fails with SQLite's I/O error
// instead of going unreplicated, and what was committed before stays intact.
func TestCapture_RefusesUncapturableJournalModes(t *testing.T) {
	for _, mode := range []string{"MEMORY", "OFF"} {
		t.Run(mode, func(t *testing.T) {
			m := newMount(t, "")
			db := openDB(t, m.Path("app.db"))
			exec1(t, db, `CREATE TABLE t (x)`)
			exec1(t, db, `INSERT INTO t VALUES (1)`)
			exec1(t, db, `PRAGMA journal_mode=`+mode)
			_, err := db.Exec(`INSERT INTO t VALUES (2)`)
			if err == nil || !strings.Contains(err.Error(), "disk I/O error") {
				t.Fatalf("write in journal_mode=%s: got %v, want a disk I/O error", mode, err)
			}
			if !strings.Contains(m.log.String(), "journal_mode OFF and MEMORY cannot be captured") {
				t.Fatalf("log does not say why the write failed:\n%s", m.log.tail(20))
			}
			db.Close()
			db = openDB(t, m.Path("app.db"))
			if n := queryInt(t, db, `SELECT count(*) FROM t`); n != 1 {
				t.Fatalf("%d rows after the refused write, want 1", n)
			}
			if s := queryString(t, db, `PRAGMA integrity_check`); s != "ok" {
				t.Fatal(s)
			}
			db.Close()
			m.verifyChain("app.db")
		})
	}
}

// TestCapture_JournalModeSwitches switches a live database between every
// capturable mode, writing in each, and requires an exact chain.
func TestCapture_JournalModeSwitches(t *testing.T) {
	m := newMount(t, "")
	db := openDB(t, m.Path("app.db"))
	db.SetMaxOpenConns(1)
	exec1(t, db, `CREATE TABLE t (x)`)
	for i, mode := range []string{"WAL", "DELETE", "TRUNCATE", "WAL", "PERSIST", "WAL", "DELETE"} {
		exec1(t, db, `PRAGMA journal_mode=`+mode)
		for j := 0; j < 20; j++ {
			exec1(t, db, `INSERT INTO t VALUES (?)`, fmt.Sprintf("%d-%d-%s", i, j, strings.Repeat("y", j*50)))
		}
	}
	db.Close()
	m.verifyChain("app.db")
}

// TestCapture_ExclusiveLocking: with locking_mode=EXCLUSIVE SQLite keeps
// the WAL index in memory (no -shm) and may keep the journal between
// transactions; capture must still be exact.
func TestCapture_ExclusiveLocking(t *testing.T) {
	for _, mode := range journalModes {
		t.Run(mode, func(t *testing.T) {
			m := newMount(t, "")
			db := openDB(t, m.Path("app.db"), "locking_mode(EXCLUSIVE)", "journal_mode("+mode+")")
			db.SetMaxOpenConns(1)
			exec1(t, db, `CREATE TABLE t (x)`)
			for i := 0; i < 300; i++ {
				exec1(t, db, `INSERT INTO t VALUES (randomblob(500))`)
			}
			db.Close()
			m.verifyChain("app.db")
		})
	}
}

// TestCapture_ConcurrentProcesses runs several writer processes and
// readers on one database at once; every acknowledged row must be present
// and the chain exact.
func TestCapture_ConcurrentProcesses(t *testing.T) {
	for _, mode := range []string{"WAL", "DELETE"} {
		t.Run(mode, func(t *testing.T) {
			m := newMount(t, "")
			path := m.Path("shared.db")
			setup := openDB(t, path, "journal_mode("+mode+")")
			exec1(t, setup, `CREATE TABLE IF NOT EXISTS acked (id INTEGER PRIMARY KEY, v BLOB)`)
			setup.Close()
			const writers = 3
			var wg sync.WaitGroup
			logs := make([]string, writers)
			procs := make([]*exec.Cmd, writers)
			for i := range writers {
				logs[i] = fmt.Sprintf("%s/acked-%d", t.TempDir(), i)
				w := exec.Command(os.Args[0], "-test.run=^$")
				w.Env = append(os.Environ(), writerEnv+"="+path, "PAGEFS_WRITER_LOG="+logs[i],
					"PAGEFS_WRITER_MODE="+mode, "PAGEFS_WRITER_START="+strconv.Itoa(1+i*1_000_000),
					"PAGEFS_WRITER_PAUSE=500us") // contended, but leaves room for the shell's writes
				w.Stderr = os.Stderr
				if err := w.Start(); err != nil {
					t.Fatal(err)
				}
				procs[i] = w
				t.Cleanup(func() { _ = w.Process.Kill() })
			}
			stop := make(chan struct{})
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := openDB(t, path, "journal_mode("+mode+")")
					defer r.Close()
					for {
						select {
						case <-stop:
							return
						default:
						}
						var n int
						if err := r.QueryRow(`SELECT count(*) FROM acked`).Scan(&n); err != nil {
							t.Errorf("reader: %v", err)
							return
						}
						time.Sleep(time.Millisecond)
					}
				}()
			}
			// The shell writes too, in its own process.
			for i := 0; i < 20; i++ {
				sqlite3(t, path, fmt.Sprintf(".timeout 60000\nINSERT INTO acked (id, v) VALUES (%d, 'shell');", 5_000_000+i))
			}
			time.Sleep(2 * time.Second)
			for _, w := range procs {
				_ = w.Process.Signal(os.Interrupt)
				_ = w.Process.Kill()
				_ = w.Wait()
			}
			close(stop)
			wg.Wait()
			db := openDB(t, path)
			total := 0
			for _, l := range logs {
				ids := readLines(t, l)
				total += len(ids)
				for _, id := range ids {
					if queryInt(t, db, `SELECT count(*) FROM acked WHERE id = ?`, id) != 1 {
						t.Fatalf("acknowledged id %s missing", id)
					}
				}
			}
			if s := queryString(t, db, `PRAGMA integrity_check`); s != "ok" {
				t.Fatal(s)
			}
			db.Close()
			t.Logf("%d rows acknowledged by %d writer processes", total, writers)
			m.verifyChain("shared.db")
		})
	}
}
