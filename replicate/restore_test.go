package replicate_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/replicate"
	"github.com/pagefs/pagefs/replicate/ltxtest"
)

// history writes n commits of db straight to level 0 of c and returns the
// image after each TXID (index TXID-1).
func history(t *testing.T, c replicate.Client, db *ltxtest.DB, n int) [][]byte {
	t.Helper()
	var images [][]byte
	for i := 0; i < n; i++ {
		var b []byte
		if i%7 == 6 {
			b = db.Commit(uint32(len(db.Pages)) - 2) // shrink now and then
		} else {
			b = db.RandomCommit(24, 3)
		}
		writeFile(t, c, 0, b)
		images = append(images, db.Image())
	}
	return images
}

func TestRestore_PointInTimeByTXID(t *testing.T) {
	runWithClient(t, func(t *testing.T, c replicate.Client) {
		db := ltxtest.NewDB(4096, 10)
		images := history(t, c, db, 20)
		// A compaction of 5-12 and a snapshot at 9: plans mix levels.
		compactInto(t, c, 1, 5, 12)
		writeSnapshotAt(t, c, images, 9, db.PageSize)
		for _, txid := range []ltx.TXID{1, 4, 8, 9, 12, 13, 20} {
			img, res := restoreBytes(t, c, replicate.RestoreOptions{TXID: txid})
			if res.Pos.TXID != txid {
				t.Fatalf("restore to %s restored %s", txid, res.Pos.TXID)
			}
			mustEqualImage(t, img, images[txid-1])
		}
	})
}

func TestRestore_PointInTimeByTimestamp(t *testing.T) {
	runWithClient(t, func(t *testing.T, c replicate.Client) {
		db := ltxtest.NewDB(4096, 11)
		base := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
		db.Now = func() time.Time { return base.Add(time.Duration(db.TXID-1) * time.Second) } // TXID n at base+(n-1)s
		images := history(t, c, db, 10)
		for _, k := range []int{1, 4, 10} {
			at := base.Add(time.Duration(k-1)*time.Second + 500*time.Millisecond)
			img, res := restoreBytes(t, c, replicate.RestoreOptions{Timestamp: at})
			if res.Pos.TXID != ltx.TXID(k) {
				t.Fatalf("restore to %s restored TXID %s, want %d", at, res.Pos.TXID, k)
			}
			if want := base.Add(time.Duration(k-1) * time.Second); !res.Timestamp.Equal(want) {
				t.Fatalf("restored time %s, want %s", res.Timestamp, want)
			}
			mustEqualImage(t, img, images[k-1])
		}
		_, err := replicate.Restore(context.Background(), c, filepath.Join(t.TempDir(), "x.db"), replicate.RestoreOptions{Timestamp: base.Add(-time.Hour)})
		if !errors.Is(err, replicate.ErrTxNotAvailable) {
			t.Fatalf("restore before the first commit: %v, want ErrTxNotAvailable", err)
		}
	})
}

// compactInto merges level 0's files min..max into one file at level.
func compactInto(t *testing.T, c replicate.Client, level int, min, max ltx.TXID) {
	t.Helper()
	var files [][]byte
	for _, fi := range listLevel(t, c, 0, min) {
		if fi.MaxTXID <= max {
			files = append(files, readAll(t, c, 0, fi.MinTXID, fi.MaxTXID, 0, 0))
		}
	}
	writeFile(t, c, level, compactBytes(t, files))
}

// writeSnapshotAt stores a snapshot of images[txid-1] at level 9.
func writeSnapshotAt(t *testing.T, c replicate.Client, images [][]byte, txid ltx.TXID, pageSize uint32) {
	t.Helper()
	db := ltxtest.NewDB(pageSize, 0)
	img := images[txid-1]
	for i := 0; i < len(img); i += int(pageSize) {
		db.Pages = append(db.Pages, img[i:i+int(pageSize)])
		db.Checksum = db.Checksum.Add(ltx.ChecksumPage(uint32(i/int(pageSize))+1, img[i:i+int(pageSize)]))
	}
	db.TXID = txid
	writeFile(t, c, replicate.SnapshotLevel, db.Snapshot())
}

func TestRestore_FewestFiles(t *testing.T) {
	c := newDestination(t, "file").Client("app.db")
	db := ltxtest.NewDB(4096, 12)
	images := history(t, c, db, 30)
	compactInto(t, c, 1, 1, 10)
	compactInto(t, c, 1, 11, 20)
	compactInto(t, c, 2, 1, 20)
	writeSnapshotAt(t, c, images, 15, db.PageSize)
	plan, err := replicate.Plan(context.Background(), c, 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// Snapshot 1-15, then level 2's 1-20 (overlapping), then 21..30 from level 0.
	if len(plan) != 12 || plan[0].Level != 9 || plan[1].Level != 2 {
		t.Fatalf("plan %v", describePlan(plan))
	}
	img, _ := restoreBytes(t, c, replicate.RestoreOptions{})
	mustEqualImage(t, img, images[29])
}

func describePlan(plan []*ltx.FileInfo) string {
	var s []string
	for _, fi := range plan {
		s = append(s, ltx.FormatFilename(fi.MinTXID, fi.MaxTXID)+"@"+string(rune('0'+fi.Level)))
	}
	return strings.Join(s, " ")
}

func TestRestore_CorruptFileNamesKey(t *testing.T) {
	runWithClient(t, func(t *testing.T, c replicate.Client) {
		db := ltxtest.NewDB(4096, 13)
		writeFile(t, c, 0, db.Commit(8))
		b := db.RandomCommit(8, 2)
		b[len(b)/2] ^= 0xff // flip a byte inside a page
		writeFile(t, c, 0, b)
		_, err := replicate.Restore(context.Background(), c, filepath.Join(t.TempDir(), "out.db"), replicate.RestoreOptions{})
		if err == nil {
			t.Fatal("restore of a corrupt backup succeeded")
		}
		if !strings.Contains(err.Error(), replicate.Location(c, 0, 2, 2)) {
			t.Fatalf("error %q does not name the corrupt file %s", err, replicate.Location(c, 0, 2, 2))
		}
	})
}

func TestRestore_GapIsReported(t *testing.T) {
	c := newDestination(t, "file").Client("app.db")
	db := ltxtest.NewDB(4096, 14)
	history(t, c, db, 5)
	if err := c.DeleteLTXFiles(context.Background(), []*ltx.FileInfo{{Level: 0, MinTXID: 3, MaxTXID: 3}}); err != nil {
		t.Fatal(err)
	}
	_, err := replicate.Plan(context.Background(), c, 0, time.Time{})
	if !errors.Is(err, replicate.ErrTxNotAvailable) || !strings.Contains(err.Error(), "0000000000000002") {
		t.Fatalf("plan over a gap after TXID 2: %v", err)
	}
}

func TestRestore_RefusesExistingOutput(t *testing.T) {
	c := newDestination(t, "file").Client("app.db")
	writeFile(t, c, 0, ltxtest.NewDB(4096, 15).Commit(2))
	dir := t.TempDir()
	for _, name := range []string{"out.db", "wal.db-wal"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, out := range []string{"out.db", "wal.db"} {
		_, err := replicate.Restore(context.Background(), c, filepath.Join(dir, out), replicate.RestoreOptions{})
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("restore to %s: %v, want a refusal", out, err)
		}
	}
}

// compactBytes merges consecutive LTX files in memory.
func compactBytes(t *testing.T, files [][]byte) []byte {
	t.Helper()
	var out bytes.Buffer
	inputs := make([]io.Reader, len(files))
	for i, f := range files {
		inputs[i] = bytes.NewReader(f)
	}
	if err := ltx.NewCompactor(&out, inputs).Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
