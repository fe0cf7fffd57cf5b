package replicate_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/mount"
	"github.com/pagefs/pagefs/replicate"
	"github.com/pagefs/pagefs/replicate/ltxtest"
)

// localDB puts the first n commits of db in a data directory as the mount
// would have left them: the chain and the backing image.
func localDB(t *testing.T, dataDir, name string, files [][]byte, image []byte) {
	t.Helper()
	for _, b := range files {
		if _, err := ltxtest.WriteFile(filepath.Join(dataDir, name, "ltx", "0"), b); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dataDir, ".pagefs", "files", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, image, 0o644); err != nil {
		t.Fatal(err)
	}
}

// commits returns n commits of a fresh database and the image after each.
func commits(seed uint64, n int) (files [][]byte, images [][]byte, db *ltxtest.DB) {
	db = ltxtest.NewDB(4096, seed)
	for i := 0; i < n; i++ {
		files = append(files, db.RandomCommit(16, 2))
		images = append(images, db.Image())
	}
	return files, images, db
}

// openPos opens the data directory with the mount's core and returns the
// head the mount finds for name.
func openPos(t *testing.T, dataDir, name string) ltx.Pos {
	t.Helper()
	st, err := mount.Open(mount.Config{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db := st.DB(name)
	if db == nil {
		t.Fatalf("the mount does not see %s", name)
	}
	return db.Pos()
}

func reconcile(t *testing.T, dataDir string, d *replicate.Destination) ([]replicate.ReconcileResult, error) {
	t.Helper()
	return replicate.Reconcile(context.Background(), dataDir, []*replicate.Destination{d}, testLogger(t))
}

func TestReconcile_RestoresIntoEmptyDataDir(t *testing.T) {
	runWithDest(t, func(t *testing.T, d *replicate.Destination) {
		files, images, db := commits(40, 12)
		for _, b := range files {
			writeFile(t, d.Client("sub/app.db"), 0, b)
		}
		data := t.TempDir()
		res, err := reconcile(t, data, d)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || res[0].Action != "restored" || res[0].Pos != db.Pos() {
			t.Fatalf("results %+v, want sub/app.db restored at %s", res, db.Pos())
		}
		got, _ := os.ReadFile(filepath.Join(data, ".pagefs", "files", "sub", "app.db"))
		mustEqualImage(t, got, images[11])
		if pos := openPos(t, data, "sub/app.db"); pos != db.Pos() {
			t.Fatalf("mount opens the restored database at %s, want %s", pos, db.Pos())
		}
		// Again: nothing to do.
		if res, err := reconcile(t, data, d); err != nil || res[0].Action != "in sync" {
			t.Fatalf("second reconcile: %+v, %v", res, err)
		}
	})
}

func runWithDest(t *testing.T, fn func(t *testing.T, d *replicate.Destination)) {
	for _, typ := range backendTypes {
		t.Run(typ, func(t *testing.T) { fn(t, newDestination(t, typ)) })
	}
}

func TestReconcile_CatchesUp(t *testing.T) {
	files, images, db := commits(41, 10)
	d := newDestination(t, "file")
	for _, b := range files {
		writeFile(t, d.Client("app.db"), 0, b)
	}
	data := t.TempDir()
	localDB(t, data, "app.db", files[:4], images[3])
	res, err := reconcile(t, data, d)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Action != "caught up" || res[0].Pos != db.Pos() {
		t.Fatalf("result %+v", res[0])
	}
	got, _ := os.ReadFile(filepath.Join(data, ".pagefs", "files", "app.db"))
	mustEqualImage(t, got, images[9])
	ents, _ := os.ReadDir(filepath.Join(data, "app.db", "ltx", "0"))
	if len(ents) != 1 || ents[0].Name() != ltx.FormatFilename(1, 10) {
		t.Fatalf("local chain after catching up: %v", ents)
	}
	if pos := openPos(t, data, "app.db"); pos != db.Pos() {
		t.Fatalf("mount opens at %s, want %s", pos, db.Pos())
	}
}

func TestReconcile_AheadIsLeftAlone(t *testing.T) {
	files, images, _ := commits(42, 8)
	d := newDestination(t, "file")
	for _, b := range files[:5] {
		writeFile(t, d.Client("app.db"), 0, b)
	}
	data := t.TempDir()
	localDB(t, data, "app.db", files, images[7])
	res, err := reconcile(t, data, d)
	if err != nil || res[0].Action != "ahead" || res[0].Pos.TXID != 8 {
		t.Fatalf("reconcile: %+v, %v", res, err)
	}
}

func TestReconcile_DivergedIsRefused(t *testing.T) {
	files, _, _ := commits(43, 6)
	other, otherImages, _ := commits(44, 6)
	d := newDestination(t, "file")
	for _, b := range files {
		writeFile(t, d.Client("app.db"), 0, b)
	}
	data := t.TempDir()
	localDB(t, data, "app.db", other[:4], otherImages[3])
	_, err := reconcile(t, data, d)
	var div *replicate.DivergedError
	if !errors.As(err, &div) || div.DB != "app.db" || div.TXID != 4 {
		t.Fatalf("reconcile of a diverged data directory: %v", err)
	}
	for _, want := range []string{"app.db", "0000000000000004", "move", "remove the backup's copy"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
}

func TestReconcile_FinishesAnInterruptedRestore(t *testing.T) {
	files, images, db := commits(45, 5)
	d := newDestination(t, "file")
	for _, b := range files {
		writeFile(t, d.Client("app.db"), 0, b)
	}
	data := t.TempDir()
	// A crash midway left the marker and a partial chain, no image.
	localDB(t, data, "app.db", files[:2], images[1])
	os.Remove(filepath.Join(data, ".pagefs", "files", "app.db"))
	os.WriteFile(filepath.Join(data, "app.db", "restoring"), nil, 0o644)
	res, err := reconcile(t, data, d)
	if err != nil || res[0].Action != "restored" || res[0].Pos != db.Pos() {
		t.Fatalf("reconcile: %+v, %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(data, "app.db", "restoring")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("marker left behind")
	}
}
