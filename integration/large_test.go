package integration

import (
	"os"
	"strconv"
	"testing"
)

// TestCapture_LargeTransaction commits one transaction of hundreds of MB
// (PAGEFS_LARGE_TXN_MB, default 256) in WAL and DELETE mode through a pagefs
// process and requires an exact chain while pagefs's memory stays bounded:
// pages stream from the backing files to the LTX file, never through RAM.
func TestCapture_LargeTransaction(t *testing.T) {
	mb := 256
	if s := os.Getenv("PAGEFS_LARGE_TXN_MB"); s != "" {
		mb, _ = strconv.Atoi(s)
	}
	for _, mode := range []string{"WAL", "DELETE"} {
		t.Run(mode, func(t *testing.T) {
			p := startMountProc(t, "")
			db := openDB(t, p.Path("big.db"), "journal_mode("+mode+")", "cache_size(-16000)")
			exec1(t, db, `CREATE TABLE t (v BLOB)`)
			// randomblob does not compress: the LTX file is as large as the
			// transaction.
			exec1(t, db, `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < ?)
				INSERT INTO t SELECT randomblob(8000) FROM c`, mb*1024*1024/8000)
			db.Close() // the last close checkpoints: capture has finished
			rss := peakRSS(p.Pid())
			p.Stop()
			verifyDataDir(t, p.Data, "big.db")
			t.Logf("%s: one %d MB transaction captured; pagefs peak RSS %d MB", mode, mb, rss>>20)
			if rss > 200<<20 {
				t.Fatalf("pagefs peak RSS %d MB for a %d MB transaction: memory is not bounded", rss>>20, mb)
			}
		})
	}
}
