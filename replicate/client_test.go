package replicate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/replicate"
	"github.com/pagefs/pagefs/replicate/ltxtest"
)

// writeFile stores b (an LTX file) at level and returns what the client
// reported.
func writeFile(t testing.TB, c replicate.Client, level int, b []byte) *ltx.FileInfo {
	t.Helper()
	hdr := ltxtest.Header(b)
	info, err := c.WriteLTXFile(context.Background(), level, hdr.MinTXID, hdr.MaxTXID, bytes.NewReader(b))
	if err != nil {
		t.Fatalf("write level %d %s-%s: %v", level, hdr.MinTXID, hdr.MaxTXID, err)
	}
	return info
}

func listLevel(t testing.TB, c replicate.Client, level int, seek ltx.TXID) []*ltx.FileInfo {
	t.Helper()
	a, err := replicate.ListLevel(context.Background(), c, level, seek)
	if err != nil {
		t.Fatalf("list level %d: %v", level, err)
	}
	return a
}

func ranges(a []*ltx.FileInfo) []string {
	var out []string
	for _, fi := range a {
		out = append(out, ltx.FormatFilename(fi.MinTXID, fi.MaxTXID))
	}
	return out
}

func readAll(t testing.TB, c replicate.Client, level int, min, max ltx.TXID, off, size int64) []byte {
	t.Helper()
	rc, err := c.OpenLTXFile(context.Background(), level, min, max, off, size)
	if err != nil {
		t.Fatalf("open level %d %s-%s: %v", level, min, max, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClient_EmptyLevel(t *testing.T) {
	runWithClient(t, func(t *testing.T, c replicate.Client) {
		if a := listLevel(t, c, 0, 0); len(a) != 0 {
			t.Fatalf("empty level lists %v", ranges(a))
		}
	})
}

func TestClient_WriteListOpen(t *testing.T) {
	runWithClient(t, func(t *testing.T, c replicate.Client) {
		db := ltxtest.NewDB(4096, 1)
		var files [][]byte
		for i := 0; i < 5; i++ {
			files = append(files, db.RandomCommit(8, 2))
		}
		// Written out of order; listed in order.
		for _, i := range []int{3, 0, 4, 1, 2} {
			info := writeFile(t, c, 0, files[i])
			if info.Size != int64(len(files[i])) {
				t.Fatalf("file %d: size %d, want %d", i, info.Size, len(files[i]))
			}
		}
		got := listLevel(t, c, 0, 0)
		want := []string{}
		for i := 1; i <= 5; i++ {
			want = append(want, ltx.FormatFilename(ltx.TXID(i), ltx.TXID(i)))
		}
		if !slices.Equal(ranges(got), want) {
			t.Fatalf("listed %v, want %v", ranges(got), want)
		}
		for i, fi := range got {
			if fi.Level != 0 || fi.Size != int64(len(files[i])) || fi.CreatedAt.IsZero() {
				t.Fatalf("file %d listed as %+v", i, fi)
			}
			if b := readAll(t, c, 0, fi.MinTXID, fi.MaxTXID, 0, 0); !bytes.Equal(b, files[i]) {
				t.Fatalf("file %d reads back different bytes", i)
			}
		}
		if a := listLevel(t, c, 1, 0); len(a) != 0 {
			t.Fatalf("level 1 lists %v", ranges(a))
		}
	})
}

func TestClient_Seek(t *testing.T) {
	runWithClient(t, func(t *testing.T, c replicate.Client) {
		db := ltxtest.NewDB(512, 2)
		for i := 0; i < 6; i++ {
			writeFile(t, c, 0, db.RandomCommit(4, 1))
		}
		got := ranges(listLevel(t, c, 0, 4))
		want := []string{ltx.FormatFilename(4, 4), ltx.FormatFilename(5, 5), ltx.FormatFilename(6, 6)}
		if !slices.Equal(got, want) {
			t.Fatalf("seek 4 lists %v, want %v", got, want)
		}
		if a := listLevel(t, c, 0, 7); len(a) != 0 {
			t.Fatalf("seek past the end lists %v", ranges(a))
		}
	})
}

func TestClient_OpenRange(t *testing.T) {
	runWithClient(t, func(t *testing.T, c replicate.Client) {
		b := ltxtest.NewDB(4096, 3).Commit(4)
		writeFile(t, c, 9, b)
		if got := readAll(t, c, 9, 1, 1, 0, ltx.HeaderSize); !bytes.Equal(got, b[:ltx.HeaderSize]) {
			t.Fatal("header range differs")
		}
		n := int64(len(b))
		if got := readAll(t, c, 9, 1, 1, n-ltx.TrailerSize, 0); !bytes.Equal(got, b[n-ltx.TrailerSize:]) {
			t.Fatal("tail range differs")
		}
		if got := readAll(t, c, 9, 1, 1, 10, 20); !bytes.Equal(got, b[10:30]) {
			t.Fatal("middle range differs")
		}
		info := &ltx.FileInfo{Level: 9, MinTXID: 1, MaxTXID: 1, Size: n}
		hdr, err := replicate.ReadHeader(context.Background(), c, info)
		if err != nil || hdr.Commit != 4 || hdr.MaxTXID != 1 {
			t.Fatalf("ReadHeader = %+v, %v", hdr, err)
		}
		tr, err := replicate.ReadTrailer(context.Background(), c, info)
		if err != nil || tr.PostApplyChecksum == 0 {
			t.Fatalf("ReadTrailer = %+v, %v", tr, err)
		}
	})
}

func TestClient_OpenMissing(t *testing.T) {
	runWithClient(t, func(t *testing.T, c replicate.Client) {
		_, err := c.OpenLTXFile(context.Background(), 0, 7, 7, 0, 0)
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("open missing file: %v, want os.ErrNotExist", err)
		}
	})
}

func TestClient_WriteMismatchedName(t *testing.T) {
	runWithClient(t, func(t *testing.T, c replicate.Client) {
		b := ltxtest.NewDB(4096, 4).Commit(2)
		if _, err := c.WriteLTXFile(context.Background(), 0, 2, 2, bytes.NewReader(b)); err == nil {
			t.Fatal("file holding TXID 1 stored under 2-2")
		}
		if a := listLevel(t, c, 0, 0); len(a) != 0 {
			t.Fatalf("failed write left %v", ranges(a))
		}
	})
}

func TestClient_WriteUnseekable(t *testing.T) {
	runWithClient(t, func(t *testing.T, c replicate.Client) {
		b := ltxtest.NewDB(4096, 5).Commit(16)
		r := io.MultiReader(bytes.NewReader(b[:7]), bytes.NewReader(b[7:]))
		if _, err := c.WriteLTXFile(context.Background(), 0, 1, 1, r); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, c, 0, 1, 1, 0, 0); !bytes.Equal(got, b) {
			t.Fatal("stream written differs")
		}
	})
}

func TestClient_TimestampFromHeader(t *testing.T) {
	runWithClient(t, func(t *testing.T, c replicate.Client) {
		db := ltxtest.NewDB(4096, 6)
		at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
		db.Now = func() time.Time { return at }
		info := writeFile(t, c, 0, db.Commit(2))
		if !info.CreatedAt.Equal(at) {
			t.Fatalf("WriteLTXFile CreatedAt = %v, want the header's %v", info.CreatedAt, at)
		}
	})
}

func TestClient_Delete(t *testing.T) {
	runWithClient(t, func(t *testing.T, c replicate.Client) {
		db := ltxtest.NewDB(512, 7)
		var infos []*ltx.FileInfo
		for i := 0; i < 4; i++ {
			infos = append(infos, writeFile(t, c, 0, db.RandomCommit(4, 1)))
		}
		writeFile(t, c, 9, db.Snapshot())
		missing := &ltx.FileInfo{Level: 0, MinTXID: 100, MaxTXID: 100}
		if err := c.DeleteLTXFiles(context.Background(), []*ltx.FileInfo{infos[0], infos[2], missing}); err != nil {
			t.Fatal(err)
		}
		want := []string{ltx.FormatFilename(2, 2), ltx.FormatFilename(4, 4)}
		if got := ranges(listLevel(t, c, 0, 0)); !slices.Equal(got, want) {
			t.Fatalf("after delete: %v, want %v", got, want)
		}
		if err := c.DeleteAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, level := range []int{0, 9} {
			if a := listLevel(t, c, level, 0); len(a) != 0 {
				t.Fatalf("after DeleteAll level %d lists %v", level, ranges(a))
			}
		}
	})
}

func TestClient_Overwrite(t *testing.T) {
	runWithClient(t, func(t *testing.T, c replicate.Client) {
		a := ltxtest.NewDB(512, 8).Commit(3)
		b := ltxtest.NewDB(512, 9).Commit(5)
		writeFile(t, c, 0, a)
		writeFile(t, c, 0, b)
		if got := readAll(t, c, 0, 1, 1, 0, 0); !bytes.Equal(got, b) {
			t.Fatal("second write did not replace the first")
		}
	})
}

func TestDestination_DBs(t *testing.T) {
	for _, typ := range backendTypes {
		t.Run(typ, func(t *testing.T) {
			d := newDestination(t, typ)
			names := []string{"app.db", "sub/dir/other.db", "sub/third.db"}
			for i, name := range names {
				writeFile(t, d.Client(name), i, ltxtest.NewDB(512, uint64(i)).Commit(2))
			}
			got, err := d.DBs(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if !slices.Equal(got, names) {
				t.Fatalf("DBs = %v, want %v", got, names)
			}
		})
	}
}

// TestS3_CABundle reaches MinIO with AWS_CA_BUNDLE set (as on the machines
// this runs on) and unset: the SDK adds the bundle's roots to pagefs's HTTP
// client, which Litestream's own client cannot take.
func TestS3_CABundle(t *testing.T) {
	srv := needMinIO(t)
	bundle := "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(bundle); err != nil {
		t.Skipf("no system CA bundle at %s", bundle)
	}
	prev, had := os.LookupEnv("AWS_CA_BUNDLE")
	t.Cleanup(func() {
		if had {
			os.Setenv("AWS_CA_BUNDLE", prev)
		} else {
			os.Unsetenv("AWS_CA_BUNDLE")
		}
	})
	bucket := srv.NewBucket(t, "cabundle")
	for _, set := range []bool{true, false} {
		if set {
			os.Setenv("AWS_CA_BUNDLE", bundle)
		} else {
			os.Unsetenv("AWS_CA_BUNDLE")
		}
		c, err := replicate.NewClientFromURL(srv.URL(bucket, fmt.Sprintf("set-%v/app.db", set)), s3Creds())
		if err != nil {
			t.Fatal(err)
		}
		b := ltxtest.NewDB(4096, 60).Commit(2)
		if _, err := c.WriteLTXFile(context.Background(), 0, 1, 1, bytes.NewReader(b)); err != nil {
			t.Fatalf("AWS_CA_BUNDLE set=%v: %v", set, err)
		}
		if got := readAll(t, c, 0, 1, 1, 0, 0); !bytes.Equal(got, b) {
			t.Fatalf("AWS_CA_BUNDLE set=%v: read back different bytes", set)
		}
	}
}
