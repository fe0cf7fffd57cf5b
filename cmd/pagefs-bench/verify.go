package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/pagefs/pagefs/mount"
)

// check is the verdict on one database's LTX chain after one mounted run.
type check struct {
	workload string
	round    int
	ok       bool
	msg      string
}

// snapshotLive runs after a workload closed its connections, with the mount
// still up: a fresh connection checkpoints the WAL into the main file
// (PRAGMA wal_checkpoint(TRUNCATE); harmless in rollback modes) and runs
// PRAGMA integrity_check, then the database file is copied, as read through
// the mount, to out.
func snapshotLive(ctx context.Context, path, out string) error {
	db, err := openDB(ctx, dsn(path, "", ""), 1)
	if err != nil {
		return err
	}
	defer db.Close()
	var busy, logFrames, done int
	if err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done); err != nil {
		return fmt.Errorf("wal_checkpoint: %w", err)
	}
	if busy != 0 {
		return fmt.Errorf("wal_checkpoint(TRUNCATE) was blocked (busy=%d, log=%d, checkpointed=%d)", busy, logFrames, done)
	}
	var res string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&res); err != nil {
		return fmt.Errorf("integrity_check: %w", err)
	}
	if res != "ok" {
		return fmt.Errorf("integrity_check through the mount: %s", res)
	}
	if err := db.Close(); err != nil {
		return err
	}
	return copyFile(path, out)
}

// verifyChain replays the level-0 chain of database name in data dir into
// image and compares the result byte for byte with live (the file as read
// through the mount) and with the backing file. Call it after pagefs
// stopped, so that the chain and the backing file are final.
func verifyChain(data, name, live, image string) (string, error) {
	pos, err := mount.ReplayChain(filepath.Join(data, name, "ltx", "0"), image, false)
	if err != nil {
		return "", fmt.Errorf("replay %s: %w", filepath.Join(data, name, "ltx", "0"), err)
	}
	if err := compareFiles(image, live); err != nil {
		return "", fmt.Errorf("replayed image vs file read through the mount: %w", err)
	}
	backing := filepath.Join(data, ".pagefs", "files", name)
	if err := compareFiles(image, backing); err != nil {
		return "", fmt.Errorf("replayed image vs backing file %s: %w", backing, err)
	}
	fi, err := os.Stat(image)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("TXID %d, %.1f MB: replay == file through mount == backing file", uint64(pos.TXID), float64(fi.Size())/1e6), nil
}

// compareFiles reports the first difference between two database files: a
// size mismatch or the first page (by the page size in a's header) that
// differs.
func compareFiles(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	sa, err := fa.Stat()
	if err != nil {
		return err
	}
	sb, err := fb.Stat()
	if err != nil {
		return err
	}
	if sa.Size() != sb.Size() {
		return fmt.Errorf("sizes differ: %d vs %d bytes", sa.Size(), sb.Size())
	}
	ps := pageSize(fa)
	pa, pb := make([]byte, ps), make([]byte, ps)
	for off := int64(0); off < sa.Size(); off += int64(ps) {
		na, err := fa.ReadAt(pa, off)
		if err != nil && err != io.EOF {
			return err
		}
		nb, err := fb.ReadAt(pb, off)
		if err != nil && err != io.EOF {
			return err
		}
		if na != nb || !bytes.Equal(pa[:na], pb[:nb]) {
			return fmt.Errorf("page %d differs (of %d pages of %d B)", off/int64(ps)+1, sa.Size()/int64(ps), ps)
		}
	}
	return nil
}

// pageSize reads the page size from a database header; 4096 if unreadable.
func pageSize(f *os.File) int {
	var h [18]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return 4096
	}
	switch n := int(binary.BigEndian.Uint16(h[16:])); {
	case n == 1:
		return 65536
	case n >= 512 && n&(n-1) == 0:
		return n
	}
	return 4096
}

// copyFile copies src to a new file dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
