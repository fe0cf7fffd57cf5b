package integration

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pagefs/pagefs/replicate/lease/etcdtest"
)

// shell is a sqlite3 shell process that keeps one connection open, as an
// application's connection pool does.
type shell struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	n    int
	done chan struct{} // closed when the process has exited
}

func startShell(t testing.TB, path string) *shell {
	t.Helper()
	cmd := exec.Command("sqlite3", "-batch", path)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &shell{cmd: cmd, in: in, out: bufio.NewReader(pr), done: make(chan struct{})}
	go func() { cmd.Wait(); pw.Close(); close(s.done) }()
	t.Cleanup(func() { s.close() })
	return s
}

// startWritingShell starts a shell on the WAL database at path and commits
// the row 'open' to its table t through it, so that its connection holds
// the -wal open for writing, as a primary's application pool does.
func startWritingShell(t testing.TB, path string) *shell {
	t.Helper()
	s := startShell(t, path)
	if out := s.run(t, "INSERT INTO t VALUES ('open');"); out != "" {
		t.Fatalf("write on the primary's open connection: %s", out)
	}
	return s
}

// close ends the shell, which closes its connection, and waits for it.
func (s *shell) close() {
	s.in.Close()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// run sends sql to the shell and returns what it printed, errors included.
func (s *shell) run(t testing.TB, sql string) string {
	t.Helper()
	out, err := s.send(sql)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// send is run for a goroutine other than the test's.
func (s *shell) send(sql string) (string, error) {
	s.n++
	marker := fmt.Sprintf("--done-%d--", s.n)
	if _, err := fmt.Fprintf(s.in, "%s\nSELECT '%s';\n", sql, marker); err != nil {
		return "", err
	}
	var out strings.Builder
	for {
		line, err := s.out.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("sqlite3 shell ended: %v; printed %q", err, out.String())
		}
		if strings.TrimSpace(line) == marker {
			return out.String(), nil
		}
		out.WriteString(line)
	}
}

// TestPrimary_LapsedLeaseRefusesOpenConnections: in the rollback journal
// modes, a connection the application opened while the node was primary
// cannot commit once the node's lease may have lapsed (its write deadline
// passed, before anything demoted it), because every transaction opens its
// journal anew; a renewal lets it write again.
func TestPrimary_LapsedLeaseRefusesOpenConnections(t *testing.T) {
	for _, mode := range []string{"DELETE", "TRUNCATE", "PERSIST"} {
		t.Run(mode, func(t *testing.T) {
			m := newMount(t, "")
			db := openDB(t, m.Path("app.db"), "journal_mode("+mode+")")
			exec1(t, db, `CREATE TABLE t (x)`)
			count := func() int {
				var n int
				if err := db.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			// The application is another process: this one is pagefs.
			app := startShell(t, m.Path("app.db"))
			if out := app.run(t, "PRAGMA journal_mode="+mode+"; INSERT INTO t VALUES ('before');"); strings.Contains(out, "rror") {
				t.Fatalf("write on the primary: %s", out)
			}
			m.store.SetWriteDeadline(time.Now().Add(-time.Millisecond))
			out := app.run(t, "INSERT INTO t VALUES ('lapsed');")
			if !strings.Contains(out, "rror") {
				t.Fatalf("an open connection wrote past the write deadline: %q", out)
			}
			if n := count(); n != 1 {
				t.Fatalf("%d rows after the refused write, want 1", n)
			}
			m.store.SetWriteDeadline(time.Now().Add(time.Hour))
			if out := app.run(t, "INSERT INTO t VALUES ('renewed');"); strings.Contains(out, "rror") {
				t.Fatalf("write after a renewal: %s", out)
			}
			if n := count(); n != 2 {
				t.Fatalf("%d rows after the renewal, want 2", n)
			}
			t.Logf("refused with: %s", strings.TrimSpace(out))
		})
	}
}

// TestPrimary_CutOffFromEtcdFencesOpenWALConnections: a primary that cannot
// reach etcd steps down before its lease can expire, and a WAL connection
// the application opened while it was primary can no longer commit
// ("database is locked"); once the node holds the lease again, the same
// connection writes again.
func TestPrimary_CutOffFromEtcdFencesOpenWALConnections(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := startEtcdNode(t, etcd)
	waitRole(t, a, "primary", 10*time.Second)
	insert(t, a, "app.db", "1")
	old := startWritingShell(t, a.Path("app.db"))

	etcd.Signal(t, syscall.SIGSTOP)
	cut := time.Now()
	waitRole(t, a, "replica", 3*leaseTTL+5*time.Second)
	t.Logf("a stepped down %s after etcd stopped answering (lease TTL %s)", time.Since(cut).Round(10*time.Millisecond), leaseTTL)
	if out := old.run(t, "INSERT INTO t VALUES ('cut off');"); !strings.Contains(out, "database is locked") {
		t.Fatalf("write on an open connection of a primary cut off from etcd: %q", out)
	}
	if out := sqlite3Fails(t, a.Path("app.db"), "INSERT INTO t VALUES ('new');"); !strings.Contains(out, "readonly") {
		t.Fatalf("write on a new connection: %s", out)
	}

	etcd.Signal(t, syscall.SIGCONT)
	waitRole(t, a, "primary", 10*leaseTTL+10*time.Second)
	waitFor(t, "the open connection to write again", 10*time.Second, func() bool {
		return old.run(t, "INSERT INTO t VALUES ('again');") == ""
	})
	if got := rows(t, a, "app.db"); got != "1,open,again" {
		t.Fatalf("a holds %q, want 1,open,again", got)
	}
}
