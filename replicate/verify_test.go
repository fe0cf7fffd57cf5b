package replicate_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/replicate"
	"github.com/pagefs/pagefs/replicate/ltxtest"
)

func verify(t *testing.T, c replicate.Client) *replicate.VerifyReport {
	t.Helper()
	rep, err := replicate.Verify(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestVerify_SoundBackup(t *testing.T) {
	runWithClient(t, func(t *testing.T, c replicate.Client) {
		db := ltxtest.NewDB(4096, 30)
		images := history(t, c, db, 12)
		compactInto(t, c, 1, 1, 8)
		writeSnapshotAt(t, c, images, 10, db.PageSize)
		rep := verify(t, c)
		if len(rep.Problems) > 0 {
			t.Fatalf("problems in a sound backup: %v", rep.Problems)
		}
		if rep.Head != 12 || rep.Plan != 3 || rep.Levels[0].Files != 12 || rep.Levels[1].Files != 1 {
			t.Fatalf("report %+v", rep)
		}
	})
}

func TestVerify_Problems(t *testing.T) {
	cases := []struct {
		name  string
		spoil func(t *testing.T, c replicate.Client)
		want  string // in the problem
		where ltx.TXID
	}{
		{"corrupt page", func(t *testing.T, c replicate.Client) {
			b := readAll(t, c, 0, 4, 4, 0, 0)
			b[len(b)/2] ^= 1
			writeRaw(t, c, 0, 4, b)
		}, "checksum", 4},
		{"truncated", func(t *testing.T, c replicate.Client) {
			b := readAll(t, c, 0, 5, 5, 0, 0)
			writeRaw(t, c, 0, 5, b[:len(b)-30])
		}, "", 5},
		{"gap", func(t *testing.T, c replicate.Client) {
			if err := c.DeleteLTXFiles(context.Background(), []*ltx.FileInfo{{Level: 0, MinTXID: 6, MaxTXID: 6}}); err != nil {
				t.Fatal(err)
			}
		}, "gap", 7},
		{"other history", func(t *testing.T, c replicate.Client) {
			other := ltxtest.NewDB(4096, 999)
			for i := 0; i < 3; i++ {
				b := other.RandomCommit(24, 3)
				if i == 2 {
					writeFile(t, c, 0, b) // replaces TXID 3
				}
			}
		}, "checksum", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newDestination(t, "file").Client("app.db")
			history(t, c, ltxtest.NewDB(4096, 31), 8)
			tc.spoil(t, c)
			rep := verify(t, c)
			if len(rep.Problems) == 0 {
				t.Fatal("no problem found")
			}
			text := rep.Problems[0].String()
			if !strings.Contains(text, tc.want) {
				t.Fatalf("problem %q does not say %q", text, tc.want)
			}
			if tc.where != 0 && !strings.Contains(text, replicate.Location(c, 0, tc.where, tc.where)) {
				t.Fatalf("problem %q does not name %s", text, replicate.Location(c, 0, tc.where, tc.where))
			}
		})
	}
}

// writeRaw stores bytes under a name without checking them.
func writeRaw(t *testing.T, c replicate.Client, level int, txid ltx.TXID, b []byte) {
	t.Helper()
	if err := osWriteFile(replicate.Location(c, level, txid, txid), b); err != nil {
		t.Fatal(err)
	}
}
