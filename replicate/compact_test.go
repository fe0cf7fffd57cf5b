package replicate_test

import (
	"context"
	"testing"
	"time"

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
