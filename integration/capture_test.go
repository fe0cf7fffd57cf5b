package integration

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
)

// journalModes are the modes pagefs captures.
var journalModes = []string{"WAL", "DELETE", "TRUNCATE", "PERSIST"}

// TestCapture_Lifecycle runs a database through the life SQLite gives it, in
// every journal mode, and after each step requires the LTX chain to replay,
// page for page, to the database file.
func TestCapture_Lifecycle(t *testing.T) {
	for _, mode := range journalModes {
		t.Run(mode, func(t *testing.T) {
			m := newMount(t, "")
			path := m.Path("app.db")
			step := func(name string, fn func(db *sql.DB)) {
				t.Helper()
				db := openDB(t, path, "journal_mode("+mode+")", "synchronous(FULL)")
				fn(db)
				if err := db.Close(); err != nil {
					t.Fatalf("%s: close: %v", name, err)
				}
				m.verifyChain("app.db")
			}
			step("create", func(db *sql.DB) {
				exec1(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`)
			})
			step("small transactions", func(db *sql.DB) {
				for i := 0; i < 200; i++ {
					exec1(t, db, `INSERT INTO t (v) VALUES (?)`, fmt.Sprintf("row %d", i))
				}
			})
			step("one large transaction", func(db *sql.DB) {
				tx, err := db.Begin()
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < 20000; i++ {
					if _, err := tx.Exec(`INSERT INTO t (v) VALUES (?)`, strings.Repeat("x", 100+i%300)); err != nil {
						t.Fatal(err)
					}
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			})
			step("updates and deletes", func(db *sql.DB) {
				exec1(t, db, `UPDATE t SET v = v || '!' WHERE id % 3 = 0`)
				exec1(t, db, `DELETE FROM t WHERE id % 5 = 0`)
			})
			step("index", func(db *sql.DB) {
				exec1(t, db, `CREATE INDEX t_v ON t (v)`)
			})
			step("rollback", func(db *sql.DB) {
				tx, err := db.Begin()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Exec(`DELETE FROM t`); err != nil {
					t.Fatal(err)
				}
				if err := tx.Rollback(); err != nil {
					t.Fatal(err)
				}
				if n := queryInt(t, db, `SELECT count(*) FROM t`); n == 0 {
					t.Fatal("rollback lost rows")
				}
			})
			step("shrink with vacuum", func(db *sql.DB) {
				exec1(t, db, `DELETE FROM t WHERE id > 1000`)
				exec1(t, db, `VACUUM`)
			})
			if mode != "WAL" {
				step("page size change", func(db *sql.DB) {
					exec1(t, db, `PRAGMA page_size=8192`)
					exec1(t, db, `VACUUM`)
					if ps := queryInt(t, db, `PRAGMA page_size`); ps != 8192 {
						t.Fatalf("page size %d after change", ps)
					}
				})
			} else {
				step("checkpoints", func(db *sql.DB) {
					for _, kind := range []string{"PASSIVE", "FULL", "RESTART", "TRUNCATE"} {
						exec1(t, db, `INSERT INTO t (v) VALUES (?)`, kind)
						exec1(t, db, `PRAGMA wal_checkpoint(`+kind+`)`)
					}
				})
			}
			step("integrity", func(db *sql.DB) {
				if s := queryString(t, db, `PRAGMA integrity_check`); s != "ok" {
					t.Fatalf("integrity_check: %s", s)
				}
			})
		})
	}
}
