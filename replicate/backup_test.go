package replicate_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/replicate"
)

// quiet turns compaction and snapshots off, so a test sees level 0 only.
func quiet(o replicate.Options) replicate.Options {
	o.Levels = []replicate.Level{}
	o.SnapshotInterval = -1
	return o
}

func newBackup(t *testing.T, opt replicate.Options, dests ...*replicate.Destination) *replicate.Backup {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = testLogger(t)
	}
	b, err := replicate.NewBackup(opt, dests...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	return b
}

func TestBackup_UploadsEachCommit(t *testing.T) {
	for _, typ := range backendTypes {
		t.Run(typ, func(t *testing.T) {
			data := t.TempDir()
			dest := newDestination(t, typ)
			b := newBackup(t, quiet(replicate.Options{DataDir: data}), dest)
			db := newChain(t, data, "app.db", 1)
			for i := 0; i < 5; i++ {
				b.Notify("app.db", db.commit(16, 3))
				waitHeld(t, b, "app.db", uint64(db.TXID))
			}
			got := ranges(listLevel(t, dest.Client("app.db"), 0, 0))
			if len(got) != 5 {
				t.Fatalf("level 0 holds %v, want one file per commit", got)
			}
			img, res := restoreBytes(t, dest.Client("app.db"), replicate.RestoreOptions{})
			mustEqualImage(t, img, db.Image())
			if res.Pos != db.Pos() {
				t.Fatalf("restored %s, want %s", res.Pos, db.Pos())
			}
		})
	}
}

func TestBackup_MergesWhenRateIsSpent(t *testing.T) {
	data := t.TempDir()
	dest, clients := countingDestination(t)
	b := newBackup(t, quiet(replicate.Options{DataDir: data, MaxPutRate: 2, PutBurst: 1}), dest)
	db := newChain(t, data, "app.db", 2)
	for i := 0; i < 200; i++ {
		b.Notify("app.db", db.commit(32, 2))
	}
	waitHeld(t, b, "app.db", 200)
	c := clients("app.db")
	if puts := c.n("put0"); puts >= 100 {
		t.Fatalf("%d PUTs for 200 commits at 2 PUTs/s: waiting files were not merged", puts)
	}
	img, _ := restoreBytes(t, c, replicate.RestoreOptions{})
	mustEqualImage(t, img, db.Image())
}

func TestBackup_IdleMakesNoRequests(t *testing.T) {
	data := t.TempDir()
	dest, clients := countingDestination(t)
	opt := replicate.Options{DataDir: data, Levels: []replicate.Level{{Interval: 10 * time.Millisecond}}, SnapshotInterval: 20 * time.Millisecond}
	b := newBackup(t, opt, dest)
	db := newChain(t, data, "app.db", 3)
	b.Notify("app.db", db.commit(8, 1))
	b.Notify("app.db", db.commit(8, 1))
	waitHeld(t, b, "app.db", 2)
	c := clients("app.db")
	topOf := func(level int) ltx.TXID {
		a := listLevel(t, c.Client, level, 0)
		if len(a) == 0 {
			return 0
		}
		return a[len(a)-1].MaxTXID
	}
	waitFor(t, "level 1 and a snapshot to hold TXID 2", func() bool {
		return topOf(1) == 2 && topOf(replicate.SnapshotLevel) == 2
	})
	before := c.total()
	time.Sleep(300 * time.Millisecond) // many compaction ticks with nothing new
	if after := c.total(); after != before {
		t.Fatalf("an idle database made %d requests (%v)", after-before, c.calls)
	}
	if n := c.n("list"); n > replicate.SnapshotLevel+1 {
		t.Fatalf("%d LIST calls; only the startup listing of each level should list", n)
	}
}

func TestBackup_RestartNeitherReuploadsNorMisses(t *testing.T) {
	data := t.TempDir()
	dest, clients := countingDestination(t)
	db := newChain(t, data, "app.db", 4)
	b := newBackup(t, quiet(replicate.Options{DataDir: data}), dest)
	for i := 0; i < 3; i++ {
		b.Notify("app.db", db.commit(8, 2))
	}
	waitHeld(t, b, "app.db", 3)
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	puts := clients("app.db").n("put0")
	for i := 0; i < 3; i++ { // committed while the backup was stopped
		db.commit(8, 2)
	}
	b2 := newBackup(t, quiet(replicate.Options{DataDir: data}), dest)
	if floor := b2.RetentionFloor("app.db"); floor != 3 {
		t.Fatalf("after restart RetentionFloor = %d before any listing, want 3 from the position file", floor)
	}
	b2.Notify("app.db", uint64(db.TXID))
	waitHeld(t, b2, "app.db", 6)
	if got := clients("app.db").n("put0") - puts; got != 3 {
		t.Fatalf("%d level-0 PUTs after restart for 3 new commits", got)
	}
	img, _ := restoreBytes(t, dest.Client("app.db"), replicate.RestoreOptions{})
	mustEqualImage(t, img, db.Image())
}

func TestBackup_UnreachableDestinationCatchesUp(t *testing.T) {
	data := t.TempDir()
	broken, brokenClients := countingDestination(t)
	healthy, _ := countingDestination(t)
	b := newBackup(t, quiet(replicate.Options{DataDir: data, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}), broken, healthy)
	db := newChain(t, data, "app.db", 5)
	b.Notify("app.db", db.commit(8, 1))
	waitHeld(t, b, "app.db", 1)
	brokenClients("app.db").setFail(errOffline)
	for i := 0; i < 20; i++ {
		b.Notify("app.db", db.commit(8, 1))
	}
	// The healthy destination is not held back by the broken one.
	waitFor(t, "the healthy destination to catch up", func() bool {
		for _, st := range b.Status() {
			if st.Destination == healthy.String() && st.Held == 21 {
				return true
			}
		}
		return false
	})
	if floor := b.RetentionFloor("app.db"); floor != 1 {
		t.Fatalf("RetentionFloor = %d while a destination holds only TXID 1", floor)
	}
	var state string
	for _, st := range b.Status() {
		if st.Destination == broken.String() {
			state = st.State
		}
	}
	if state != "unreachable" {
		t.Fatalf("broken destination state %q, want unreachable", state)
	}
	brokenClients("app.db").setFail(nil)
	waitHeld(t, b, "app.db", 21)
	img, _ := restoreBytes(t, broken.Client("app.db"), replicate.RestoreOptions{})
	mustEqualImage(t, img, db.Image())
}

func TestBackup_DivergedDestinationStops(t *testing.T) {
	data := t.TempDir()
	dest := newDestination(t, "file")
	other := newChain(t, t.TempDir(), "app.db", 99) // another history
	for i := 0; i < 3; i++ {
		writeFile(t, dest.Client("app.db"), 0, other.RandomCommit(8, 1))
	}
	db := newChain(t, data, "app.db", 6)
	for i := 0; i < 4; i++ {
		db.commit(8, 1)
	}
	b := newBackup(t, quiet(replicate.Options{DataDir: data}), dest)
	b.Notify("app.db", 4)
	waitFor(t, "the destination to be found diverged", func() bool {
		st := b.Status()
		return len(st) == 1 && st[0].State == "diverged"
	})
	st := b.Status()[0]
	if !strings.Contains(st.Err, "checksum") || !strings.Contains(st.Err, "0000000000000003") {
		t.Fatalf("diverged error %q should name the TXID and the checksums", st.Err)
	}
	if floor := b.RetentionFloor("app.db"); floor != 0 {
		t.Fatalf("RetentionFloor = %d for a diverged destination, want 0", floor)
	}
	if got := ranges(listLevel(t, dest.Client("app.db"), 0, 0)); len(got) != 3 {
		t.Fatalf("diverged destination was written to: %v", got)
	}
}

func TestBackup_PositionFile(t *testing.T) {
	data := t.TempDir()
	dest := newDestination(t, "file")
	b := newBackup(t, quiet(replicate.Options{DataDir: data}), dest)
	db := newChain(t, data, "sub/app.db", 7)
	b.Notify("sub/app.db", db.commit(4, 1))
	waitHeld(t, b, "sub/app.db", 1)
	matches, _ := filepath.Glob(filepath.Join(data, "sub", "app.db", "backup-*.pos"))
	if len(matches) != 1 {
		t.Fatalf("position files %v, want one", matches)
	}
	body, _ := os.ReadFile(matches[0])
	if !strings.HasPrefix(string(body), ltx.TXID(1).String()+"/") || !strings.Contains(string(body), dest.String()) {
		t.Fatalf("position file holds %q", body)
	}
}

func TestBackup_StartsOverFromALiveSnapshot(t *testing.T) {
	data := t.TempDir()
	dest := newDestination(t, "file")
	db := newChain(t, data, "app.db", 8)
	for i := 0; i < 8; i++ {
		db.commit(16, 2)
	}
	// Local retention removed the start of the chain before the backup
	// was configured.
	for txid := 1; txid <= 4; txid++ {
		os.Remove(filepath.Join(data, "app.db", "ltx", "0", ltx.FormatFilename(ltx.TXID(txid), ltx.TXID(txid))))
	}
	opt := quiet(replicate.Options{DataDir: data})
	opt.Snapshot = func(name string, w io.Writer) (ltx.Pos, error) {
		if name != "app.db" {
			t.Errorf("snapshot of %q", name)
		}
		_, err := w.Write(db.Snapshot())
		return db.Pos(), err
	}
	b := newBackup(t, opt, dest)
	b.Notify("app.db", 8)
	waitHeld(t, b, "app.db", 8)
	b.Notify("app.db", db.commit(16, 2))
	waitHeld(t, b, "app.db", 9)
	c := dest.Client("app.db")
	if got := ranges(listLevel(t, c, replicate.SnapshotLevel, 0)); len(got) != 1 || got[0] != ltx.FormatFilename(1, 8) {
		t.Fatalf("snapshots %v, want one of TXIDs 1-8", got)
	}
	img, _ := restoreBytes(t, c, replicate.RestoreOptions{})
	mustEqualImage(t, img, db.Image())
	if rep := verify(t, c); len(rep.Problems) > 0 {
		t.Fatalf("verify: %v", rep.Problems)
	}
}
