package integration

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestReplica_RefusesApplicationWrites: on a read-only replica the
// application reads its databases but every write attempt gets SQLite's
// read-only error, and .primary names the primary.
func TestReplica_RefusesApplicationWrites(t *testing.T) {
	for _, mode := range []string{"WAL", "DELETE"} {
		t.Run(mode, func(t *testing.T) {
			m := newMount(t, "")
			db := openDB(t, m.Path("app.db"), "journal_mode("+mode+")")
			exec1(t, db, `CREATE TABLE t (x)`)
			exec1(t, db, `INSERT INTO t VALUES (1)`)
			// pagefs's own connection (this process) keeps the WAL open, as
			// the replica's apply connection does.
			if err := m.store.SetPrimary("http://primary.example:20202"); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(m.Path(".primary")); err != nil || strings.TrimSpace(string(b)) != "http://primary.example:20202" {
				t.Fatalf(".primary: %q %v", b, err)
			}
			// The application is another process: this one is pagefs.
			if out, err := exec.Command("sh", "-c", "echo x > "+m.Path(".primary")).CombinedOutput(); err == nil {
				t.Fatalf(".primary is writable by the application: %s", out)
			}
			out := sqlite3Fails(t, m.Path("app.db"), "INSERT INTO t VALUES (2);")
			if !strings.Contains(out, "attempt to write a readonly database") {
				t.Fatalf("write on a replica: %s", out)
			}
			if got := sqlite3(t, m.Path("app.db"), "SELECT count(*) FROM t;"); got != "1" {
				t.Fatalf("read on a replica: %q", got)
			}
			if out, err := exec.Command("rm", "-f", m.Path("app.db")).CombinedOutput(); err == nil {
				t.Fatalf("the application deleted a database on a replica: %s", out)
			}
			if err := m.store.SetPrimary(""); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(m.Path(".primary")); !os.IsNotExist(err) {
				t.Fatalf(".primary on a primary: %v", err)
			}
			db.Close()
		})
	}
}
