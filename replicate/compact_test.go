package replicate_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/replicate"
)

func TestBackup_LevelsSnapshotsAndRetention(t *testing.T) {
	for _, typ := range backendTypes {
		t.Run(typ, func(t *testing.T) {
			data := t.TempDir()
			dest := newDestination(t, typ)
			opt := replicate.Options{
				DataDir: data,
				Levels: []replicate.Level{
					{Interval: 20 * time.Millisecond, Retention: time.Nanosecond},
					{Interval: 60 * time.Millisecond},
				},
				SnapshotInterval:  150 * time.Millisecond,
				SnapshotRetention: time.Hour,
				L0Retention:       time.Nanosecond,
			}
			b := newBackup(t, opt, dest)
			db := newChain(t, data, "app.db", 20)
			c := dest.Client("app.db")
			var images [][]byte
			for i := 0; i < 40; i++ {
				b.Notify("app.db", db.commit(32, 2))
				images = append(images, db.Image())
				time.Sleep(5 * time.Millisecond) // let compactions interleave with commits
			}
			waitHeld(t, b, "app.db", 40)
			top := func(level int) uint64 {
				a := listLevel(t, c, level, 0)
				if len(a) == 0 {
					return 0
				}
				return uint64(a[len(a)-1].MaxTXID)
			}
			waitFor(t, "level 2 and a snapshot to reach TXID 40", func() bool {
				return top(2) == 40 && top(replicate.SnapshotLevel) == 40
			})
			// Level 0 keeps only what level 1 lacks, plus its newest file;
			// level 1 only what level 2 lacks, plus its newest.
			waitFor(t, "retention of levels 0 and 1", func() bool {
				return len(listLevel(t, c, 0, 0)) == 1 && len(listLevel(t, c, 1, 0)) == 1
			})
			plan, err := replicate.Plan(context.Background(), c, 0, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if len(plan) != 1 || plan[0].Level != replicate.SnapshotLevel {
				t.Fatalf("plan for the newest TXID: %s, want the snapshot alone", describePlan(plan))
			}
			img, _ := restoreBytes(t, c, replicate.RestoreOptions{})
			mustEqualImage(t, img, images[39])
			// Older points are still reachable at level 2's granularity.
			for _, fi := range listLevel(t, c, 2, 0) {
				img, _ := restoreBytes(t, c, replicate.RestoreOptions{TXID: fi.MaxTXID})
				mustEqualImage(t, img, images[fi.MaxTXID-1])
			}
		})
	}
}

// stripChecksums re-encodes an LTX file the way Litestream 0.5 writes
// them: with HeaderFlagNoChecksum and no database checksums.
func stripChecksums(t *testing.T, b []byte) []byte {
	t.Helper()
	dec := ltx.NewDecoder(bytes.NewReader(b))
	if err := dec.DecodeHeader(); err != nil {
		t.Fatal(err)
	}
	hdr := dec.Header()
	hdr.Flags |= ltx.HeaderFlagNoChecksum
	hdr.PreApplyChecksum = 0
	var out bytes.Buffer
	enc := ltx.NewEncoder(&out)
	if err := enc.EncodeHeader(hdr); err != nil {
		t.Fatal(err)
	}
	page := make([]byte, hdr.PageSize)
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, page); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if err := enc.EncodePage(ph, page); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestBackup_CompactsPastLitestreamFiles continues a bucket whose first
// files Litestream wrote (without database checksums).
func TestBackup_CompactsPastLitestreamFiles(t *testing.T) {
	data := t.TempDir()
	dest := newDestination(t, "file")
	c := dest.Client("app.db")
	db := newChain(t, data, "app.db", 50)
	for i := 0; i < 2; i++ {
		writeFile(t, c, 0, stripChecksums(t, db.RandomCommit(16, 2)))
	}
	for i := 0; i < 3; i++ {
		db.commit(16, 2) // pagefs's, in the local chain only
	}
	opt := replicate.Options{DataDir: data, Levels: []replicate.Level{{Interval: 10 * time.Millisecond}}, SnapshotInterval: -1}
	b := newBackup(t, opt, dest)
	b.Notify("app.db", 5)
	waitHeld(t, b, "app.db", 5)
	waitFor(t, "level 1 to reach TXID 5", func() bool {
		a := listLevel(t, c, 1, 0)
		return len(a) > 0 && a[len(a)-1].MaxTXID == 5
	})
	// No level-1 file mixes Litestream's files (1-2) with pagefs's (3-5).
	for _, fi := range listLevel(t, c, 1, 0) {
		if fi.MinTXID <= 2 && fi.MaxTXID >= 3 {
			t.Fatalf("level 1 file %s mixes files with and without checksums", ltx.FormatFilename(fi.MinTXID, fi.MaxTXID))
		}
	}
	img, _ := restoreBytes(t, c, replicate.RestoreOptions{})
	mustEqualImage(t, img, db.Image())
}
