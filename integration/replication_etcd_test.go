package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pagefs/pagefs/replicate/lease/etcdtest"
)

// leaseTTL is the etcd lease TTL of the failover tests: short, so that the
// tests wait little; the default is 10s.
const leaseTTL = 2 * time.Second

// startEtcdNode starts a node that competes for the cluster's lease.
func startEtcdNode(t testing.TB, etcd *etcdtest.Server) *node {
	t.Helper()
	return startNode(t, "--lease", "etcd", "--etcd-endpoints", etcd.Endpoint,
		"--etcd-key", "/pagefs-test/"+t.Name(), "--lease-ttl", leaseTTL.String())
}

// insert writes one row on a node's database with the sqlite3 shell (a
// separate process, as an application would).
func insert(t testing.TB, n *node, db, v string) {
	t.Helper()
	sqlite3(t, n.Path(db), "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t (v TEXT); INSERT INTO t VALUES ('"+v+"');")
}

// rows returns the rows of t on a node, or the error the shell printed.
func rows(t testing.TB, n *node, db string) string {
	t.Helper()
	cmd := exec.Command("sqlite3", "-batch", n.Path(db), "SELECT group_concat(v, ',') FROM (SELECT v FROM t ORDER BY rowid);")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("error: %v %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestReplication_EtcdFailover: the primary is SIGKILLed, a replica takes
// the lease within the TTL and accepts writes at its position, and the old
// primary, restarted, follows the new one and converges.
func TestReplication_EtcdFailover(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := startEtcdNode(t, etcd)
	waitRole(t, a, "primary", 10*time.Second)
	b := startEtcdNode(t, etcd)
	waitRole(t, b, "replica", 10*time.Second)

	insert(t, a, "app.db", "1")
	insert(t, a, "app.db", "2")
	waitFor(t, "b to have both rows", 30*time.Second, func() bool { return rows(t, b, "app.db") == "1,2" })
	out := sqlite3Fails(t, b.Path("app.db"), "INSERT INTO t VALUES ('x');")
	if !strings.Contains(out, "attempt to write a readonly database") {
		t.Fatalf("write on the replica: %s", out)
	}

	killed := time.Now()
	a.Kill()
	waitRole(t, b, "primary", 3*leaseTTL+5*time.Second)
	t.Logf("failover: b is primary %s after a was SIGKILLed (lease TTL %s)", time.Since(killed).Round(time.Millisecond), leaseTTL)
	insert(t, b, "app.db", "3")
	if got := rows(t, b, "app.db"); got != "1,2,3" {
		t.Fatalf("new primary holds %q", got)
	}

	a.Start()
	waitRole(t, a, "replica", 10*time.Second)
	waitConverged(t, b, a, "app.db")
	if got := rows(t, a, "app.db"); got != "1,2,3" {
		t.Fatalf("old primary, now a replica, holds %q", got)
	}
	if got, err := os.ReadFile(a.Path(".primary")); err != nil || strings.TrimSpace(string(got)) != b.URL {
		t.Fatalf(".primary on the rejoined node: %q %v, want %s", got, err, b.URL)
	}
}

// TestReplication_EtcdRejoinDiverged: the primary commits a transaction no
// replica received, then dies. The replica that takes over writes its own
// transaction under the same TXID. The old primary rejoins as a replica,
// logs the TXID it discards, resyncs from a snapshot and converges.
func TestReplication_EtcdRejoinDiverged(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := startEtcdNode(t, etcd)
	waitRole(t, a, "primary", 10*time.Second)
	b := startEtcdNode(t, etcd)
	waitRole(t, b, "replica", 10*time.Second)
	insert(t, a, "app.db", "common")
	waitFor(t, "b to follow", 30*time.Second, func() bool { return rows(t, b, "app.db") == "common" })

	// b goes down; a commits "lost", which only a holds, and dies too.
	// (A SIGSTOPped b would still receive the frame into its socket. b
	// stops cleanly: a replica SIGKILLed while its own SQLite connections
	// are open on its own mount leaves a mount the next start cannot probe;
	// see the report on checkMountpoint.)
	b.Stop()
	insert(t, a, "app.db", "lost")
	settleNode(t, a, "app.db")
	lostTXID := txidOf(t, a, "app.db")
	a.Kill()
	b.Start()
	waitRole(t, b, "primary", 3*leaseTTL+5*time.Second)
	insert(t, b, "app.db", "new")

	a.Start()
	waitRole(t, a, "replica", 10*time.Second)
	waitConverged(t, b, a, "app.db")
	if got := rows(t, a, "app.db"); got != "common,new" {
		t.Fatalf("rejoined node holds %q, want common,new", got)
	}
	re := regexp.MustCompile(`discarded local transactions that the primary lacks.* first=(\d+) last=(\d+)`)
	m := re.FindStringSubmatch(a.logText())
	if m == nil {
		t.Fatalf("no log line names the discarded transactions")
	}
	first, _ := strconv.ParseUint(m[1], 10, 64)
	last, _ := strconv.ParseUint(m[2], 10, 64)
	if first > lostTXID || last < lostTXID {
		t.Fatalf("log names TXIDs %d-%d as discarded; the lost transaction was TXID %d", first, last, lostTXID)
	}
	t.Logf("rejoin discarded TXIDs %d-%d (the lost transaction: %d)", first, last, lostTXID)
}

// TestReplication_EtcdPausedPrimary: a primary paused with SIGSTOP loses
// its lease. Once resumed it refuses the application's writes, on new
// connections and, through the fence, on a WAL connection opened while it
// was primary. It applies nothing to that database while the connection is
// open (other databases keep following), and catches up once it closes.
func TestReplication_EtcdPausedPrimary(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := startEtcdNode(t, etcd)
	waitRole(t, a, "primary", 10*time.Second)
	b := startEtcdNode(t, etcd)
	waitRole(t, b, "replica", 10*time.Second)
	insert(t, a, "app.db", "1")
	old := startWritingShell(t, a.Path("app.db"))
	waitFor(t, "b to follow", 30*time.Second, func() bool { return rows(t, b, "app.db") == "1,open" })
	// The fence opens the -shm a moment after the connection first does.
	waitFor(t, "a's fence to hold the -shm open", 10*time.Second, func() bool { return fenceHolds(t, a.Pid(), a.Path("app.db-shm")) })

	if err := syscall.Kill(a.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	waitRole(t, b, "primary", 3*leaseTTL+5*time.Second)
	t.Logf("b is primary %s after a was paused", time.Since(paused).Round(10*time.Millisecond))
	insert(t, b, "app.db", "2")
	// The open connection writes while a is stopped: SQLite may wait on
	// the stopped daemon (an attribute lookup), so the write runs aside.
	stale := make(chan string, 1)
	go func() {
		out, err := old.send("INSERT INTO t VALUES ('stale');")
		if err != nil {
			out = err.Error()
		}
		stale <- out
	}()
	time.Sleep(200 * time.Millisecond)
	if err := syscall.Kill(a.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case out := <-stale:
		if !strings.Contains(out, "database is locked") {
			t.Fatalf("write on a connection opened while primary, after the lease lapsed: %q", out)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the open connection's write did not return after the resume")
	}
	out := sqlite3Fails(t, a.Path("app.db"), "INSERT INTO t VALUES ('paused');")
	if !strings.Contains(out, "readonly") {
		t.Fatalf("write on a new connection on the resumed old primary: %s", out)
	}
	waitRole(t, a, "replica", 10*time.Second)
	if !strings.Contains(a.logText(), "fence: the application's connections can no longer commit") {
		t.Fatalf("a's log does not report the fence:\n%s", a.logText())
	}

	// While the connection stays open, a applies nothing and says why.
	waitFor(t, "a to report app.db paused for the open writer", 30*time.Second, func() bool {
		st, ok := a.status(t)
		return ok && st.Replication != nil && slices.Equal(st.Replication.Paused["app.db"], []int{old.cmd.Process.Pid})
	})
	st, err := exec.Command(pagefsBin, "status", "--http-addr", a.Addr).CombinedOutput()
	if err != nil || !strings.Contains(string(st), fmt.Sprintf("paused: processes [%d]", old.cmd.Process.Pid)) {
		t.Fatalf("pagefs status on a does not show app.db paused: %v\n%s", err, st)
	}
	if out := old.run(t, "INSERT INTO t VALUES ('stale2');"); !strings.Contains(out, "database is locked") {
		t.Fatalf("second write on the open connection: %q", out)
	}
	if got := strings.TrimSpace(old.run(t, "SELECT group_concat(v, ',') FROM t;")); got != "1,open" {
		t.Fatalf("the open connection reads %q, want its last view 1,open", got)
	}
	if got := rows(t, b, "app.db"); got != "1,open,2" {
		t.Fatalf("new primary holds %q, want 1,open,2", got)
	}
	// Other databases keep following meanwhile, new ones included.
	insert(t, b, "other.db", "o1")
	waitFor(t, "a to follow other.db while app.db waits", 30*time.Second, func() bool { return rows(t, a, "other.db") == "o1" })
	if got := rows(t, a, "app.db"); got != "1,open" {
		t.Fatalf("a applied to app.db while its writer was open: %q", got)
	}

	old.close()
	waitConverged(t, b, a, "app.db")
	if st, _ := a.status(t); st.Replication == nil || len(st.Replication.Paused) != 0 {
		t.Fatalf("a still reports paused databases after converging: %+v", st.Replication)
	}
	if got := rows(t, a, "app.db"); got != "1,open,2" {
		t.Fatalf("resumed node holds %q, want 1,open,2", got)
	}
	if got := strings.TrimSpace(sqlite3(t, a.Path("app.db"), "PRAGMA integrity_check;")); got != "ok" {
		t.Fatalf("integrity_check on a: %s", got)
	}
}

// fenceHolds reports whether the fence process of the pagefs at pid has
// path open.
func fenceHolds(t testing.TB, pid int, path string) bool {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		dir := filepath.Dir(st)
		if cmd, _ := os.ReadFile(dir + "/cmdline"); !bytes.Contains(cmd, []byte("\x00fence")) {
			continue
		}
		fds, _ := filepath.Glob(dir + "/fd/*")
		for _, fd := range fds {
			if l, _ := os.Readlink(fd); l == path {
				return true
			}
		}
	}
	return false
}

// settleNode checkpoints a database on a node so its capture is final.
func settleNode(t testing.TB, n *node, db string) {
	t.Helper()
	sqlite3(t, n.Path(db), "PRAGMA wal_checkpoint(TRUNCATE);")
}

func txidOf(t testing.TB, n *node, db string) uint64 {
	t.Helper()
	p := n.pos(t, db)
	txid, err := strconv.ParseUint(strings.Split(p, "/")[0], 10, 64)
	if err != nil {
		t.Fatalf("position %q of %s: %v", p, db, err)
	}
	return txid
}

var _ = fmt.Sprint
