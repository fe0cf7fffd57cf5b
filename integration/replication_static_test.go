package integration

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReplication_Static: a static primary and replica. Writes on the
// primary appear on the replica (WAL and DELETE journal modes, a new
// database, a shrinking VACUUM), the replica's chain ends at the primary's
// exact position, the application's writes on the replica get SQLite's
// read-only error, and replica readers' integrity_check stays ok while a
// continuous write load is applied. It logs the lag from commit on the
// primary to visibility on the replica.
func TestReplication_Static(t *testing.T) {
	primary := startNode(t)
	replica := startNode(t, "--primary-url", primary.URL)

	for _, mode := range []string{"WAL", "DELETE"} {
		t.Run(mode, func(t *testing.T) {
			name := "app-" + strings.ToLower(mode) + ".db"
			pdb := openDB(t, primary.Path(name), "journal_mode("+mode+")")
			exec1(t, pdb, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`)
			for i := 0; i < 20; i++ {
				exec1(t, pdb, `INSERT INTO t (v) VALUES (?)`, strings.Repeat("x", 100+i*200))
			}
			settle(t, pdb)
			waitConverged(t, primary, replica, name)
			rdb := readOnlyDB(t, replica.Path(name))
			if n := queryInt(t, rdb, `SELECT count(*) FROM t`); n != 20 {
				t.Fatalf("replica has %d rows, want 20", n)
			}
			if got := queryString(t, rdb, `PRAGMA integrity_check`); got != "ok" {
				t.Fatalf("integrity_check on the replica: %s", got)
			}
			out := sqlite3Fails(t, replica.Path(name), "INSERT INTO t (v) VALUES ('no');")
			if !strings.Contains(out, "attempt to write a readonly database") {
				t.Fatalf("write on the replica: %s", out)
			}
			// Shrink the database: the replica truncates too.
			exec1(t, pdb, `DELETE FROM t WHERE id > 2`)
			exec1(t, pdb, `VACUUM`)
			settle(t, pdb)
			waitConverged(t, primary, replica, name)
			if n := queryInt(t, rdb, `SELECT count(*) FROM t`); n != 2 {
				t.Fatalf("replica has %d rows after the delete, want 2", n)
			}
			if got := queryString(t, rdb, `PRAGMA integrity_check`); got != "ok" {
				t.Fatalf("integrity_check on the replica after VACUUM: %s", got)
			}
			rdb.Close()
			pdb.Close()
		})
	}

	t.Run("LagAndIntegrityUnderLoad", func(t *testing.T) {
		const name = "load.db"
		pdb := openDB(t, primary.Path(name), "journal_mode(WAL)", "synchronous(NORMAL)")
		pdb.SetMaxOpenConns(1)
		exec1(t, pdb, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
		exec1(t, pdb, `INSERT INTO t (v) VALUES (zeroblob(10))`)
		waitConverged(t, primary, replica, name)
		rdb := readOnlyDB(t, replica.Path(name))

		// Commit one row at a time and time how long each takes to be
		// visible on the replica.
		var lags []time.Duration
		for i := 0; i < 300; i++ {
			start := time.Now()
			res, err := pdb.Exec(`INSERT INTO t (v) VALUES (randomblob(?))`, 50+i%7*300)
			if err != nil {
				t.Fatal(err)
			}
			id, _ := res.LastInsertId()
			deadline := time.Now().Add(30 * time.Second)
			for {
				var got int64
				if err := rdb.QueryRow(`SELECT coalesce(max(id), 0) FROM t`).Scan(&got); err == nil && got >= id {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("row %d not on the replica after 30s", id)
				}
				time.Sleep(100 * time.Microsecond)
			}
			lags = append(lags, time.Since(start))
		}
		slices.Sort(lags)
		t.Logf("commit on the primary -> visible on the replica, %d transactions: p50 %s, p99 %s, max %s",
			len(lags), lags[len(lags)/2], lags[len(lags)*99/100], lags[len(lags)-1])

		// Readers on the replica check integrity while the primary writes
		// as fast as it can.
		stop := make(chan struct{})
		var checks atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for r := 0; r < 2; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				db := readOnlyDB(t, replica.Path(name))
				for {
					select {
					case <-stop:
						return
					default:
					}
					var s string
					if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&s); err != nil || s != "ok" {
						errs <- fmt.Errorf("integrity_check on the replica under load: %q %v", s, err)
						return
					}
					checks.Add(1)
				}
			}()
		}
		for i := 0; i < 500; i++ {
			exec1(t, pdb, `INSERT INTO t (v) VALUES (randomblob(?))`, 50+i%11*400)
			if i%50 == 0 {
				exec1(t, pdb, `DELETE FROM t WHERE id % 3 = 0`)
			}
		}
		settle(t, pdb)
		waitConverged(t, primary, replica, name)
		close(stop)
		wg.Wait()
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		t.Logf("%d integrity checks on the replica during 500 transactions", checks.Load())
		waitConverged(t, primary, replica, name)
		if st, ok := replica.status(t); ok && st.Replication != nil {
			if l, ok := st.Replication.Lag[name]; ok {
				t.Logf("replica /status lag of %s (capture on the primary -> applied): p50 %.3f ms, p99 %.3f ms over %d samples", name, l.P50Ms, l.P99Ms, l.Samples)
			}
		}
		rdb.Close()
		pdb.Close()
	})

	if b, err := os.ReadFile(replica.Path(".primary")); err != nil || strings.TrimSpace(string(b)) != primary.URL {
		t.Fatalf(".primary on the replica: %q %v", b, err)
	}
	if _, err := os.Stat(primary.Path(".primary")); !os.IsNotExist(err) {
		t.Fatalf(".primary on the primary: %v", err)
	}
}
