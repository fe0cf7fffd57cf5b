package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// sizes are the counts the workloads use; -quick picks small ones.
type sizes struct {
	walWrites     int // WAL, synchronous=NORMAL, 1-row commits
	walFullWrites int // WAL, synchronous=FULL, 1-row commits
	readRows      int // rows of the point-read databases (~200 B each)
	reads         int // point reads per read workload
	delWrites     int // DELETE journal, 1-row commits
	bulkMB        int // bulk load, megabytes (10^6 B) of row payload
	bulkTxns      int // bulk load, transactions
	mixedRows     int // rows of the 4-connection database
	mixedOps      int // operations of the 4 connections together
	connRows      int // rows of the connection-per-request database
	connReqs      int // open, one point read, close
}

// fullSizes are the default counts; quickSizes serve a smoke run.
func fullSizes() sizes {
	return sizes{
		walWrites: 20000, walFullWrites: 5000,
		readRows: 100000, reads: 100000,
		delWrites: 3000,
		bulkMB:    100, bulkTxns: 10,
		mixedRows: 20000, mixedOps: 40000,
		connRows: 10000, connReqs: 10000,
	}
}

func quickSizes() sizes {
	return sizes{
		walWrites: 1500, walFullWrites: 200,
		readRows: 5000, reads: 2000,
		delWrites: 200,
		bulkMB:    8, bulkTxns: 2,
		mixedRows: 2000, mixedOps: 2000,
		connRows: 1000, connReqs: 200,
	}
}

// rowSize is the payload of one row in the write and read workloads;
// bulkRowSize that of one bulk-load row.
const (
	rowSize     = 200
	bulkRowSize = 1000
)

// measure is what one timed run of a workload produced: an amount of work
// (operations or megabytes) done in elapsed, and the latency of each unit
// (operation, request or transaction).
type measure struct {
	amount  float64
	elapsed time.Duration
	lat     []time.Duration
}

// workload is one benchmark. setup prepares the database at path and is not
// timed; run does the timed work on it and closes every connection before
// returning. Both use only SQLite through modernc.org/sqlite, so they run
// unchanged on a plain directory and through the mount.
type workload struct {
	name  string
	desc  string
	unit  string // "ops/s" or "MB/s"
	setup func(ctx context.Context, path string) error
	run   func(ctx context.Context, path string) (measure, error)
}

// workloads returns every workload at the given sizes, in the order they run.
func workloads(sz sizes) []*workload {
	pl := newPayload()
	return []*workload{
		{
			name: "wal-write-normal", unit: "ops/s",
			desc:  fmt.Sprintf("WAL, synchronous=NORMAL, %d 1-row INSERT transactions (%d B rows), one connection", sz.walWrites, rowSize),
			setup: createTable("WAL", "NORMAL", 0, pl),
			run:   writeRun("WAL", "NORMAL", sz.walWrites, pl),
		},
		{
			name: "wal-write-full", unit: "ops/s",
			desc:  fmt.Sprintf("WAL, synchronous=FULL, %d 1-row INSERT transactions, one connection", sz.walFullWrites),
			setup: createTable("WAL", "FULL", 0, pl),
			run:   writeRun("WAL", "FULL", sz.walFullWrites, pl),
		},
		{
			name: "wal-read", unit: "ops/s",
			desc:  fmt.Sprintf("WAL, %d point reads by random primary key on %d rows (~%d MB), one connection", sz.reads, sz.readRows, sz.readRows*rowSize/1e6),
			setup: createTable("WAL", "NORMAL", sz.readRows, pl),
			run:   readRun("WAL", sz.readRows, sz.reads),
		},
		{
			name: "delete-write", unit: "ops/s",
			desc:  fmt.Sprintf("DELETE journal, synchronous=NORMAL, %d 1-row INSERT transactions, one connection", sz.delWrites),
			setup: createTable("DELETE", "NORMAL", 0, pl),
			run:   writeRun("DELETE", "NORMAL", sz.delWrites, pl),
		},
		{
			name: "delete-read", unit: "ops/s",
			desc:  fmt.Sprintf("DELETE journal, %d point reads by random primary key on %d rows, one connection", sz.reads, sz.readRows),
			setup: createTable("DELETE", "NORMAL", sz.readRows, pl),
			run:   readRun("DELETE", sz.readRows, sz.reads),
		},
		{
			name: "bulk-load", unit: "MB/s",
			desc:  fmt.Sprintf("WAL, synchronous=NORMAL, %d MB of %d B rows in %d transactions; latency per transaction", sz.bulkMB, bulkRowSize, sz.bulkTxns),
			setup: createTable("WAL", "NORMAL", 0, pl),
			run:   bulkRun(sz.bulkMB, sz.bulkTxns, pl),
		},
		{
			name: "mixed-4conn", unit: "ops/s",
			desc:  fmt.Sprintf("WAL, synchronous=NORMAL, 4 connections in parallel, %d ops: 90%% point reads, 10%% 1-row INSERTs, on %d rows", sz.mixedOps, sz.mixedRows),
			setup: createTable("WAL", "NORMAL", sz.mixedRows, pl),
			run:   mixedRun(sz.mixedRows, sz.mixedOps, pl),
		},
		{
			name: "conn-per-request", unit: "ops/s",
			desc:  fmt.Sprintf("WAL, %d times: open a connection, one point read, close (no other connection open), on %d rows", sz.connReqs, sz.connRows),
			setup: createTable("WAL", "NORMAL", sz.connRows, pl),
			run:   connRun(sz.connRows, sz.connReqs),
		},
	}
}

// dsn is the modernc.org/sqlite data source name an application would use.
// An empty journal or sync leaves that setting alone.
func dsn(path, journal, sync string) string {
	s := "file:" + path + "?_pragma=busy_timeout(5000)"
	if journal != "" {
		s += "&_pragma=journal_mode(" + journal + ")"
	}
	if sync != "" {
		s += "&_pragma=synchronous(" + sync + ")"
	}
	return s
}

// openDB opens a pool of at most conns connections and checks that one works.
func openDB(ctx context.Context, dsn string, conns int) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// payload hands out slices of one random buffer, so rows are incompressible
// (as LZ4 in LTX sees them) and cost no allocation to produce.
type payload struct{ buf []byte }

func newPayload() payload {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	return payload{buf}
}

// pick returns n bytes at a random offset.
func (p payload) pick(rng *rand.Rand, n int) []byte {
	off := rng.IntN(len(p.buf) - n)
	return p.buf[off : off+n]
}

// createTable returns a setup that creates table t in the given modes and
// fills it with rows rows, 10,000 per transaction.
func createTable(journal, sync string, rows int, pl payload) func(context.Context, string) error {
	return func(ctx context.Context, path string) error {
		db, err := openDB(ctx, dsn(path, journal, sync), 1)
		if err != nil {
			return err
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)`); err != nil {
			return err
		}
		rng := rand.New(rand.NewPCG(3, 4))
		for done := 0; done < rows; {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			for n := 0; n < 10000 && done < rows; n, done = n+1, done+1 {
				if _, err := tx.Exec(`INSERT INTO t(v) VALUES(?)`, pl.pick(rng, rowSize)); err != nil {
					tx.Rollback()
					return err
				}
			}
			if err := tx.Commit(); err != nil {
				return err
			}
		}
		return db.Close()
	}
}

// writeRun returns a run of n autocommit 1-row INSERTs on one connection.
func writeRun(journal, sync string, n int, pl payload) func(context.Context, string) (measure, error) {
	return func(ctx context.Context, path string) (measure, error) {
		db, err := openDB(ctx, dsn(path, journal, sync), 1)
		if err != nil {
			return measure{}, err
		}
		defer db.Close()
		// Statements run with a context that is never done: modernc.org/sqlite
		// starts a watcher goroutine per call otherwise. ctx is polled instead.
		bg := context.Background()
		stmt, err := db.PrepareContext(bg, `INSERT INTO t(v) VALUES(?)`)
		if err != nil {
			return measure{}, err
		}
		defer stmt.Close()
		rng := rand.New(rand.NewPCG(5, 6))
		m := measure{amount: float64(n), lat: make([]time.Duration, 0, n)}
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := ctx.Err(); err != nil {
				return m, err
			}
			t0 := time.Now()
			if _, err := stmt.ExecContext(bg, pl.pick(rng, rowSize)); err != nil {
				return m, fmt.Errorf("insert %d: %w", i+1, err)
			}
			m.lat = append(m.lat, time.Since(t0))
		}
		m.elapsed = time.Since(start)
		stmt.Close()
		return m, db.Close()
	}
}

// readRun returns a run of n point reads by random key on one connection.
func readRun(journal string, rows, n int) func(context.Context, string) (measure, error) {
	return func(ctx context.Context, path string) (measure, error) {
		db, err := openDB(ctx, dsn(path, journal, ""), 1)
		if err != nil {
			return measure{}, err
		}
		defer db.Close()
		bg := context.Background()
		stmt, err := db.PrepareContext(bg, `SELECT v FROM t WHERE id = ?`)
		if err != nil {
			return measure{}, err
		}
		defer stmt.Close()
		rng := rand.New(rand.NewPCG(7, 8))
		m := measure{amount: float64(n), lat: make([]time.Duration, 0, n)}
		var v []byte
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := ctx.Err(); err != nil {
				return m, err
			}
			t0 := time.Now()
			if err := stmt.QueryRowContext(bg, rng.IntN(rows)+1).Scan(&v); err != nil {
				return m, fmt.Errorf("read %d: %w", i+1, err)
			}
			m.lat = append(m.lat, time.Since(t0))
		}
		m.elapsed = time.Since(start)
		stmt.Close()
		return m, db.Close()
	}
}

// bulkRun returns a run that loads mb megabytes of rows in txns transactions.
func bulkRun(mb, txns int, pl payload) func(context.Context, string) (measure, error) {
	return func(ctx context.Context, path string) (measure, error) {
		db, err := openDB(ctx, dsn(path, "WAL", "NORMAL"), 1)
		if err != nil {
			return measure{}, err
		}
		defer db.Close()
		bg := context.Background()
		rows := mb * 1e6 / bulkRowSize
		perTx := (rows + txns - 1) / txns
		rng := rand.New(rand.NewPCG(9, 10))
		m := measure{amount: float64(rows*bulkRowSize) / 1e6}
		start := time.Now()
		for done := 0; done < rows; {
			if err := ctx.Err(); err != nil {
				return m, err
			}
			t0 := time.Now()
			tx, err := db.BeginTx(bg, nil)
			if err != nil {
				return m, err
			}
			stmt, err := tx.PrepareContext(bg, `INSERT INTO t(v) VALUES(?)`)
			if err != nil {
				tx.Rollback()
				return m, err
			}
			for n := 0; n < perTx && done < rows; n, done = n+1, done+1 {
				if _, err := stmt.ExecContext(bg, pl.pick(rng, bulkRowSize)); err != nil {
					tx.Rollback()
					return m, err
				}
			}
			stmt.Close()
			if err := tx.Commit(); err != nil {
				return m, fmt.Errorf("commit: %w", err)
			}
			m.lat = append(m.lat, time.Since(t0))
		}
		m.elapsed = time.Since(start)
		return m, db.Close()
	}
}

// mixedRun returns a run of four connections in parallel, each doing its
// share of n operations, one in ten a 1-row INSERT, the rest point reads.
func mixedRun(rows, n int, pl payload) func(context.Context, string) (measure, error) {
	const conns = 4
	return func(ctx context.Context, path string) (measure, error) {
		db, err := openDB(ctx, dsn(path, "WAL", "NORMAL"), conns)
		if err != nil {
			return measure{}, err
		}
		defer db.Close()
		bg := context.Background()
		// Open the four connections before the clock starts.
		cs := make([]*sql.Conn, conns)
		for i := range cs {
			if cs[i], err = db.Conn(bg); err != nil {
				return measure{}, err
			}
			defer cs[i].Close()
		}
		lats := make([][]time.Duration, conns)
		errs := make([]error, conns)
		var wg sync.WaitGroup
		start := time.Now()
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lats[i], errs[i] = mixedWorker(ctx, c, uint64(i), rows, n/conns, pl)
			}()
		}
		wg.Wait()
		m := measure{amount: float64(n / conns * conns), elapsed: time.Since(start)}
		for i := range cs {
			m.lat = append(m.lat, lats[i]...)
			cs[i].Close()
		}
		if err := errors.Join(errs...); err != nil {
			return m, err
		}
		return m, db.Close()
	}
}

// mixedWorker is one connection of mixedRun.
func mixedWorker(ctx context.Context, c *sql.Conn, seed uint64, rows, n int, pl payload) ([]time.Duration, error) {
	bg := context.Background()
	ins, err := c.PrepareContext(bg, `INSERT INTO t(v) VALUES(?)`)
	if err != nil {
		return nil, err
	}
	defer ins.Close()
	sel, err := c.PrepareContext(bg, `SELECT v FROM t WHERE id = ?`)
	if err != nil {
		return nil, err
	}
	defer sel.Close()
	rng := rand.New(rand.NewPCG(11, seed))
	lat := make([]time.Duration, 0, n)
	var v []byte
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return lat, err
		}
		t0 := time.Now()
		if rng.IntN(10) == 0 {
			if _, err := ins.ExecContext(bg, pl.pick(rng, rowSize)); err != nil {
				return lat, fmt.Errorf("insert: %w", err)
			}
		} else if err := sel.QueryRowContext(bg, rng.IntN(rows)+1).Scan(&v); err != nil {
			return lat, fmt.Errorf("read: %w", err)
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}

// connRun returns a run of n requests that each open a connection with the
// application's DSN, read one row and close it.
func connRun(rows, n int) func(context.Context, string) (measure, error) {
	return func(ctx context.Context, path string) (measure, error) {
		name := dsn(path, "WAL", "NORMAL")
		bg := context.Background()
		rng := rand.New(rand.NewPCG(13, 14))
		m := measure{amount: float64(n), lat: make([]time.Duration, 0, n)}
		var v []byte
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := ctx.Err(); err != nil {
				return m, err
			}
			t0 := time.Now()
			db, err := sql.Open("sqlite", name)
			if err != nil {
				return m, err
			}
			err = db.QueryRowContext(bg, `SELECT v FROM t WHERE id = ?`, rng.IntN(rows)+1).Scan(&v)
			if cerr := db.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return m, fmt.Errorf("request %d: %w", i+1, err)
			}
			m.lat = append(m.lat, time.Since(t0))
		}
		m.elapsed = time.Since(start)
		return m, nil
	}
}
