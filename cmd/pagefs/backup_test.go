package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/replicate/ltxtest"
)

// fileBackup writes n commits of a database into a file:// backup at
// root/name and returns the image after each.
func fileBackup(t *testing.T, root, name string, n int, at time.Time) [][]byte {
	t.Helper()
	db := ltxtest.NewDB(4096, 7)
	db.Now = func() time.Time { return at.Add(time.Duration(db.TXID) * time.Minute) } // TXID n at at+n min
	var images [][]byte
	for i := 0; i < n; i++ {
		b := db.RandomCommit(10, 2)
		if _, err := ltxtest.WriteFile(filepath.Join(root, name, "ltx", "0"), b); err != nil {
			t.Fatal(err)
		}
		images = append(images, db.Image())
	}
	return images
}

func TestRestoreCommand(t *testing.T) {
	root := t.TempDir()
	at := time.Date(2024, 5, 6, 7, 0, 0, 0, time.UTC)
	images := fileBackup(t, root, "app.db", 6, at)
	out := t.TempDir()
	url := "file://" + root + "/app.db"
	cases := []struct {
		args []string
		txid int
	}{
		{nil, 6},
		{[]string{"--txid", "3"}, 3},
		{[]string{"--txid", ltx.TXID(4).String()}, 4},
		{[]string{"--timestamp", at.Add(2*time.Minute + 30*time.Second).Format(time.RFC3339)}, 2},
	}
	for i, tc := range cases {
		file := filepath.Join(out, strings.Repeat("x", i+1)+".db")
		args := append([]string{"restore", "-o", file}, tc.args...)
		stdout, stderr, code, _ := runLTXCommand(t, append(args, url)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr)
		}
		got, _ := os.ReadFile(file)
		if !bytes.Equal(got, images[tc.txid-1]) {
			t.Fatalf("%v: restored image differs from TXID %d", tc.args, tc.txid)
		}
		if want := "TXID " + ltx.TXID(tc.txid).String(); !strings.Contains(stdout, want) {
			t.Fatalf("%v: output %q does not say %q", tc.args, stdout, want)
		}
	}
	// Refusals: existing output, a TXID the backup lacks, both targets.
	for _, args := range [][]string{
		{"restore", "-o", filepath.Join(out, "x.db"), url},
		{"restore", "-o", filepath.Join(out, "new.db"), "--txid", "99", url},
		{"restore", "--txid", "1", "--timestamp", at.Format(time.RFC3339), url},
	} {
		if _, stderr, code, err := runLTXCommand(t, args...); code == 0 {
			t.Fatalf("%v succeeded: %s", args, stderr)
		} else if err == nil || !strings.Contains(err.Error(), "pagefs restore") {
			t.Fatalf("%v: error %v", args, err)
		}
	}
}

func TestVerifyCommand(t *testing.T) {
	root := t.TempDir()
	fileBackup(t, root, "app.db", 4, time.Now())
	fileBackup(t, root, "sub/other.db", 3, time.Now())
	stdout, stderr, code, _ := runLTXCommand(t, "verify", "file://"+root)
	if code != 0 {
		t.Fatalf("verify of a sound backup: exit %d: %s %s", code, stdout, stderr)
	}
	for _, want := range []string{"app.db: ok, restorable to TXID 0000000000000004", "sub/other.db: ok"} {
		if !strings.Contains(stdout, want) {
			t.Fatalf("output %q lacks %q", stdout, want)
		}
	}
	bad := filepath.Join(root, "app.db", "ltx", "0", ltx.FormatFilename(2, 2))
	b, _ := os.ReadFile(bad)
	b[len(b)-3] ^= 1 // the file checksum
	os.WriteFile(bad, b, 0o644)
	stdout, _, code, _ = runLTXCommand(t, "verify", "file://"+root+"/app.db")
	if code != 1 || !strings.Contains(stdout, bad) || !strings.Contains(stdout, "PROBLEMS") {
		t.Fatalf("verify of a corrupt file: exit %d, output %q", code, stdout)
	}
}

func TestBackupConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pagefs.yml")
	os.WriteFile(p, []byte("backup:\n  - file:///a\n  - s3://bucket/x?endpoint=http://127.0.0.1:9000\nbackup-options:\n  put-rate: 5\n  levels: [10s, 1m]\n"), 0o644)
	cfg, err := loadConfigFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Backup) != 2 || cfg.BackupOptions.PutRate != 5 || len(cfg.BackupOptions.Levels) != 2 {
		t.Fatalf("config %+v", cfg.BackupConfig)
	}
	env := map[string]string{"PAGEFS_BACKUP": "file:///b, file:///c"}
	if err := applyEnv(&cfg, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	dests, err := cfg.BackupConfig.destinations()
	if err != nil || len(dests) != 2 || dests[1].String() != "file:///c" {
		t.Fatalf("destinations %v, %v", dests, err)
	}
	cfg.Backup = []string{"s3://ab/x"}
	if _, err := cfg.BackupConfig.destinations(); err == nil || !strings.Contains(err.Error(), "3 characters") {
		t.Fatalf("a two-letter bucket: %v", err)
	}
}
