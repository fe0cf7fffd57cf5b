package integration

// Measurements of the backup for the closing note of issue 6. They run once
// whatever b.N is:
//
//	go test ./integration -run '^$' -bench 'BenchmarkBackup' -benchtime 1x -v -timeout 60m

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/replicate"
)

// backupBenchMount starts a mount backed up to a fresh MinIO bucket.
func backupBenchMount(b *testing.B, name string) (*mountProc, string) {
	srv := minioStart(b)
	url := srv.URL(srv.NewBucket(b, name), "bench")
	return startMountProc(b, "", "--backup", url), url
}

// backupLevelTop returns the newest TXID of a level.
func backupLevelTop(b *testing.B, url, db string, level int) ltx.TXID {
	c, err := replicate.NewClientFromURL(dbURL(url, db))
	if err != nil {
		b.Fatal(err)
	}
	a, err := replicate.ListLevel(context.Background(), c, level, 0)
	if err != nil || len(a) == 0 {
		return 0
	}
	return a[len(a)-1].MaxTXID
}

// BenchmarkBackupRestore restores the same ~50 MB database after 1,000 and
// after 100,000 transactions of history (DELETE journal mode: one TXID per
// transaction), from MinIO on loopback: with the default compaction levels
// (level 1 every 30s), and, for comparison, with level 0 only and no PUT
// limit (every transaction its own file, the worst case).
func BenchmarkBackupRestore(b *testing.B) {
	cases := []struct {
		name    string
		history int
		options string // backup-options in YAML
	}{
		{"1k", 1000, "{}"},
		{"100k", 100000, "{}"},
		{"100k-level0-only", 100000, "{levels: [], put-rate: 1000000, put-burst: 1000000}"},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			srv := minioStart(b)
			url := srv.URL(srv.NewBucket(b, "restore"), "bench")
			cfg := filepath.Join(b.TempDir(), "pagefs.yml")
			os.WriteFile(cfg, []byte("backup: ['"+url+"']\nbackup-options: "+tc.options+"\n"), 0o644)
			p := startMountProc(b, "", "--config", cfg)
			db := openDB(b, p.Path("app.db"), "journal_mode(DELETE)", "synchronous(NORMAL)")
			exec1(b, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
			const rows, perTxn = 12000, 120
			txns := 1
			for i := 0; i < rows/perTxn; i++ { // ~50 MB in 100 transactions
				exec1(b, db, `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < ?) INSERT INTO t(v) SELECT randomblob(4000) FROM c`, perTxn)
				txns++
			}
			start := time.Now()
			stmt, err := db.Prepare(`UPDATE t SET v = randomblob(4000) WHERE id = ?`)
			if err != nil {
				b.Fatal(err)
			}
			for ; txns < tc.history; txns++ {
				if _, err := stmt.Exec(1 + rand.IntN(rows)); err != nil {
					b.Fatal(err)
				}
			}
			stmt.Close()
			writeTime := time.Since(start)
			db.Close()
			head := backupHead(b, p.Data, "app.db")
			t0 := time.Now()
			backupWait(b, url, "app.db", head)
			uploadLag := time.Since(t0)
			if tc.options == "{}" {
				deadline := time.Now().Add(90 * time.Second)
				for backupLevelTop(b, url, "app.db", 1) < head && time.Now().Before(deadline) {
					time.Sleep(200 * time.Millisecond) // level 1 compacts every 30s
				}
			}
			c, _ := replicate.NewClientFromURL(dbURL(url, "app.db"))
			plan, err := replicate.Plan(context.Background(), c, 0, time.Time{})
			if err != nil {
				b.Fatal(err)
			}
			var planBytes int64
			levels := map[int]int{}
			for _, fi := range plan {
				planBytes += fi.Size
				levels[fi.Level]++
			}
			out := filepath.Join(b.TempDir(), "restored.db")
			t0 = time.Now()
			backupCLI(b, "restore", "-o", out, dbURL(url, "app.db"))
			restoreTime := time.Since(t0)
			fi, _ := os.Stat(out)
			backupSameBytes(b, out, filepath.Join(p.Data, ".pagefs", "files", "app.db"))
			b.Logf("%s: %d transactions = TXIDs 1-%d (updates at %.0f txn/s; bucket caught up %.1fs after the last commit); database %.1f MB; restore %.2fs from %d files %v (%.1f MB)",
				tc.name, tc.history, head, float64(tc.history-100)/writeTime.Seconds(), uploadLag.Seconds(), float64(fi.Size())/1e6, restoreTime.Seconds(), len(plan), levels, float64(planBytes)/1e6)
			b.ReportMetric(restoreTime.Seconds(), "restore-s")
			b.ReportMetric(float64(len(plan)), "files")
		})
	}
}

// BenchmarkBackupPuts counts the requests that store files (level-0
// uploads, compactions, snapshots) per committed transaction, at 1 and at
// 500 transactions per second for a minute, with the default settings.
func BenchmarkBackupPuts(b *testing.B) {
	for _, rate := range []int{1, 500} {
		b.Run(fmt.Sprintf("%dtps", rate), func(b *testing.B) {
			p, url := backupBenchMount(b, "puts")
			db := openDB(b, p.Path("app.db"), "journal_mode(WAL)", "synchronous(NORMAL)")
			exec1(b, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
			backupWait(b, url, "app.db", backupHead(b, p.Data, "app.db"))
			before := backupPutLines(p)
			const window = time.Minute
			start := time.Now()
			n := 0
			for time.Since(start) < window {
				next := start.Add(time.Duration(n+1) * time.Second / time.Duration(rate))
				time.Sleep(time.Until(next))
				exec1(b, db, `INSERT INTO t(v) VALUES (randomblob(200))`)
				n++
			}
			head := backupHead(b, p.Data, "app.db")
			backupWait(b, url, "app.db", head)
			puts := backupPutLines(p) - before
			b.Logf("%d txn/s for %s: %d transactions, %d PUTs (level 0, compactions, snapshots): %.4f PUTs per transaction",
				rate, window, n, puts, float64(puts)/float64(n))
			b.ReportMetric(float64(puts)/float64(n), "puts/txn")
			db.Close()
		})
	}
}

// backupPutLines counts the upload log lines of a mount (debug level).
func backupPutLines(p *mountProc) int {
	log := readFile(p.Log)
	return strings.Count(log, "msg=uploaded") + strings.Count(log, "msg=compacted") + strings.Count(log, `msg="snapshot written"`)
}

// BenchmarkBackupLatency measures, on a quiet system (one commit every
// 1.1s, within the default budget of one PUT per second), the time from a
// commit returning to its file being readable in the bucket.
func BenchmarkBackupLatency(b *testing.B) {
	for _, mode := range []string{"WAL", "DELETE"} {
		b.Run(mode, func(b *testing.B) {
			p, url := backupBenchMount(b, "latency")
			db := openDB(b, p.Path("app.db"), "journal_mode("+mode+")", "synchronous(NORMAL)")
			exec1(b, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
			backupWait(b, url, "app.db", backupHead(b, p.Data, "app.db"))
			c, err := replicate.NewClientFromURL(dbURL(url, "app.db"))
			if err != nil {
				b.Fatal(err)
			}
			var lat []time.Duration
			for i := 0; i < 40; i++ {
				time.Sleep(1100 * time.Millisecond) // quiet between commits
				txid := backupHeadWait(b, p.Data) + 1
				exec1(b, db, `INSERT INTO t(v) VALUES (randomblob(200))`)
				t0 := time.Now()
				for {
					rc, err := c.OpenLTXFile(context.Background(), 0, txid, txid, 0, ltx.HeaderSize)
					if err == nil {
						rc.Close()
						break
					}
					if time.Since(t0) > 30*time.Second {
						b.Fatalf("TXID %s not in the bucket after 30s: %v", txid, err)
					}
					time.Sleep(500 * time.Microsecond)
				}
				lat = append(lat, time.Since(t0))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.Logf("%s mode, %d commits: commit-to-bucket median %s, p90 %s, max %s",
				mode, len(lat), lat[len(lat)/2].Round(100*time.Microsecond), lat[len(lat)*9/10].Round(100*time.Microsecond), lat[len(lat)-1].Round(100*time.Microsecond))
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
			db.Close()
		})
	}
}

// backupHeadWait returns the local head once capture is quiet.
func backupHeadWait(b *testing.B, data string) ltx.TXID {
	h := backupHead(b, data, "app.db")
	for {
		time.Sleep(30 * time.Millisecond)
		if h2 := backupHead(b, data, "app.db"); h2 == h {
			return h
		} else {
			h = h2
		}
	}
}
