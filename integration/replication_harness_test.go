package integration

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// node is a pagefs process of a replicated cluster, with its HTTP server on
// a loopback port.
type node struct {
	*mountProc
	Addr string // host:port of --http-addr
	URL  string // advertise URL
}

// freeAddr returns a free loopback host:port.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startNode starts a pagefs node serving HTTP on a free port; args are the
// role flags (--primary-url, --lease etcd ...).
func startNode(t testing.TB, args ...string) *node {
	t.Helper()
	addr := freeAddr(t)
	url := "http://" + addr
	all := append([]string{"--http-addr", addr, "--advertise-url", url}, args...)
	return &node{mountProc: startMountProc(t, "", all...), Addr: addr, URL: url}
}

// statusDoc is the part of /status the tests read.
type statusDoc struct {
	Role      string `json:"role"`
	Databases []struct {
		Name     string `json:"name"`
		TXID     uint64 `json:"txid"`
		Checksum string `json:"checksum"`
	} `json:"databases"`
	Replication *struct {
		Primary   string           `json:"primary"`
		Connected bool             `json:"connected"`
		LastError string           `json:"last_error"`
		Paused    map[string][]int `json:"paused"`
		Lag       map[string]struct {
			Samples int     `json:"samples"`
			P50Ms   float64 `json:"p50_ms"`
			P99Ms   float64 `json:"p99_ms"`
		} `json:"lag"`
	} `json:"replication"`
}

// status reads the node's /status; ok is false if it does not answer.
func (n *node) status(t testing.TB) (statusDoc, bool) {
	var st statusDoc
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", n.URL+"/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, false
	}
	return st, true
}

// pos returns a database's "TXID/checksum" on the node, or "".
func (n *node) pos(t testing.TB, db string) string {
	st, _ := n.status(t)
	for _, d := range st.Databases {
		if d.Name == db {
			return fmt.Sprintf("%d/%s", d.TXID, d.Checksum)
		}
	}
	return ""
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitConverged waits until the replica's chain head of db equals the
// primary's (same TXID and checksum).
func waitConverged(t testing.TB, primary, replica *node, db string) string {
	t.Helper()
	var p, r string
	waitFor(t, "replica "+replica.URL+" to reach the primary's position of "+db, 30*time.Second, func() bool {
		p, r = primary.pos(t, db), replica.pos(t, db)
		return p != "" && p == r
	})
	return p
}

// waitRole waits until the node reports the role.
func waitRole(t testing.TB, n *node, role string, timeout time.Duration) {
	t.Helper()
	waitFor(t, n.URL+" to be "+role, timeout, func() bool {
		st, ok := n.status(t)
		return ok && st.Role == role
	})
}

// readOnlyDB opens a database on a replica for reading.
func readOnlyDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db := openDB(t, path)
	db.SetMaxOpenConns(1)
	return db
}

// logTail returns the last lines of a node's log.
func (n *node) logText() string {
	b, _ := os.ReadFile(n.Log)
	return string(b)
}

// settle makes the primary's capture of everything committed on db final
// (a TRUNCATE checkpoint in WAL mode passes pagefs's gate), so that its
// position can be compared with a replica's.
func settle(t testing.TB, db *sql.DB) {
	t.Helper()
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if strings.EqualFold(mode, "wal") {
		exec1(t, db, `PRAGMA wal_checkpoint(TRUNCATE)`)
	}
}
