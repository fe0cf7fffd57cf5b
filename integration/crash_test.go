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
			next, progressed := 1, 0
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
				p.Start() // cleans up the stale mount and recovers
				// A row committed but killed before its id was logged is in
				// the database: the next writer starts above every id there,
				// or its first insert would fail and the round test nothing.
				maxID := checkAcked(t, p.Path("crash.db"), acked, mode)
				if maxID >= int64(next) {
					progressed++
				}
				next = int(maxID) + 1
				t.Logf("round %d: %d rows acknowledged so far, highest id %d", round, len(acked), maxID)
			}
			if progressed == 0 {
				t.Fatalf("no writer committed a row in %d rounds: the crashes tested nothing", rounds)
			}
			p.Stop()
			verifyDataDir(t, p.Data, "crash.db")
		})
	}
}

// checkAcked requires every acknowledged id to be in the database and the
// database to pass integrity_check. It returns the highest id there.
func checkAcked(t *testing.T, path string, acked []string, mode string) int64 {
	t.Helper()
	db := openDB(t, path, "journal_mode("+mode+")")
	defer db.Close()
	if s := queryString(t, db, `PRAGMA integrity_check`); s != "ok" {
		t.Fatalf("integrity_check after crash: %s", s)
	}
	if queryInt(t, db, `SELECT count(*) FROM sqlite_schema WHERE name = 'acked'`) == 0 {
		if len(acked) > 0 {
			t.Fatalf("%d acknowledged rows, and no table after the crash", len(acked))
		}
		return 0
	}
	have := map[string]bool{}
	rows, err := db.Query(`SELECT id FROM acked`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		have[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, id := range acked {
		if !have[id] {
			t.Fatalf("acknowledged id %s is not in the database after the crash (%d acknowledged)", id, len(acked))
		}
	}
	return queryInt(t, db, `SELECT coalesce(max(id), 0) FROM acked`)
}

// verifyDataDir replays a stopped mount's chain and compares it with the
// backing database file.
func verifyDataDir(t *testing.T, data, name string) {
	t.Helper()
	pos := replayEquals(t, data, name, false)
	t.Logf("chain of %s replays exactly to TXID %s", name, pos.TXID)
}
