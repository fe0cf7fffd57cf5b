package integration

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writerEnv makes the test binary act as a writer process: it inserts rows
// into the database named by PAGEFS_WRITER_DB and appends each id that
// SQLite acknowledged to the file PAGEFS_WRITER_LOG (outside the mount),
// until it fails.
const writerEnv = "PAGEFS_WRITER_DB"

func writerMain() int {
	path, logPath := os.Getenv(writerEnv), os.Getenv("PAGEFS_WRITER_LOG")
	mode := os.Getenv("PAGEFS_WRITER_MODE")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode("+mode+")&_pragma=synchronous(FULL)")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS acked (id INTEGER PRIMARY KEY, v BLOB)`); err != nil {
		fmt.Fprintln(os.Stderr, "create:", err)
		return 1
	}
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer log.Close()
	start, _ := strconv.Atoi(os.Getenv("PAGEFS_WRITER_START"))
	pause, _ := time.ParseDuration(os.Getenv("PAGEFS_WRITER_PAUSE"))
	for id := start; ; id++ {
		time.Sleep(pause)
		if _, err := db.Exec(`INSERT INTO acked (id, v) VALUES (?, randomblob(?))`, id, 50+id%2000); err != nil {
			fmt.Fprintln(os.Stderr, "insert:", err)
			return 0
		}
		if _, err := fmt.Fprintln(log, id); err != nil {
			return 1
		}
	}
}

// TestCrash_KillPagefsDuringWrites SIGKILLs pagefs at random moments while
// a writer commits rows with synchronous=FULL and logs each acknowledged id
// outside the mount. After every restart, every acknowledged row must be in
// the database, integrity_check must pass, and the chain must replay to the
// database page for page.
func TestCrash_KillPagefsDuringWrites(t *testing.T) {
	rounds := 10
	if s := os.Getenv("PAGEFS_CRASH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	for _, mode := range []string{"WAL", "DELETE", "TRUNCATE", "PERSIST"} {
		t.Run(mode, func(t *testing.T) {
			p := startMountProc(t, "")
			ackLog := filepath.Join(t.TempDir(), "acked")
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
			next := 1
			for round := 0; round < rounds; round++ {
				w := exec.Command(os.Args[0], "-test.run=^$")
				w.Env = append(os.Environ(), writerEnv+"="+p.Path("crash.db"), "PAGEFS_WRITER_LOG="+ackLog,
					"PAGEFS_WRITER_MODE="+mode, "PAGEFS_WRITER_START="+strconv.Itoa(next))
				var werr strings.Builder
				w.Stderr = &werr
				if err := w.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Duration(150+rng.IntN(1000)) * time.Millisecond)
				p.Kill()
				_ = w.Wait()
				acked := readLines(t, ackLog)
				if len(acked) > 0 {
					next, _ = strconv.Atoi(acked[len(acked)-1])
					next++
				}
				p.Start() // cleans up the stale mount and recovers
				checkAcked(t, p.Path("crash.db"), acked, mode)
				t.Logf("round %d: %d rows acknowledged so far", round, len(acked))
			}
			p.Stop()
			verifyDataDir(t, p.Data, "crash.db")
		})
	}
}

// checkAcked requires every acknowledged id to be in the database and the
// database to pass integrity_check.
func checkAcked(t *testing.T, path string, acked []string, mode string) {
	t.Helper()
	db := openDB(t, path, "journal_mode("+mode+")")
	defer db.Close()
	if s := queryString(t, db, `PRAGMA integrity_check`); s != "ok" {
		t.Fatalf("integrity_check after crash: %s", s)
	}
	if len(acked) == 0 {
		return
	}
	n := queryInt(t, db, `SELECT count(*) FROM acked WHERE id <= ?`, acked[len(acked)-1])
	if n < int64(len(acked)) {
		t.Fatalf("%d acknowledged rows, only %d in the database after the crash", len(acked), n)
	}
}

// verifyDataDir replays a stopped mount's chain and compares it with the
// backing database file.
func verifyDataDir(t *testing.T, data, name string) {
	t.Helper()
	pos := replayEquals(t, data, name, false)
	t.Logf("chain of %s replays exactly to TXID %s", name, pos.TXID)
}
