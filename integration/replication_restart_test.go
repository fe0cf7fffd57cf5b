package integration

import (
	"testing"
	"time"
)

// TestReplication_ReplicaRestartCatchesUp: a replica that was down while
// the primary committed catches up when it comes back, from the primary's
// files or, once retention has deleted them, from a snapshot.
func TestReplication_ReplicaRestartCatchesUp(t *testing.T) {
	primary := startNode(t, "--retention", "1ms", "--retention-count", "1")
	replica := startNode(t, "--primary-url", primary.URL)
	pdb := openDB(t, primary.Path("app.db"), "journal_mode(WAL)")
	exec1(t, pdb, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`)
	exec1(t, pdb, `INSERT INTO t (v) VALUES ('before')`)
	settle(t, pdb)
	waitConverged(t, primary, replica, "app.db")

	// SIGKILL, while the replica's own SQLite connections are open on its
	// mount: the dying process hangs flushing them to itself, and the next
	// start must abort that connection and clean the mount up.
	replica.Kill()
	for i := 0; i < 30; i++ {
		exec1(t, pdb, `INSERT INTO t (v) VALUES ('while down')`)
	}
	settle(t, pdb)
	time.Sleep(1500 * time.Millisecond) // retention runs once a second
	replica.Start()
	waitConverged(t, primary, replica, "app.db")
	rdb := readOnlyDB(t, replica.Path("app.db"))
	if n := queryInt(t, rdb, `SELECT count(*) FROM t`); n != 31 {
		t.Fatalf("replica has %d rows after catching up, want 31", n)
	}
	if got := queryString(t, rdb, `PRAGMA integrity_check`); got != "ok" {
		t.Fatalf("integrity_check: %s", got)
	}
	rdb.Close()
	pdb.Close()
}
