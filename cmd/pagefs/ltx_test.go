package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	upstream "github.com/superfly/ltx"
	"github.com/urfave/cli/v2"
)

// runLTXCommand runs the pagefs app in-process and returns its stdout,
// stderr, and the error Run returned (with its exit code, if any).
func runLTXCommand(t *testing.T, args ...string) (stdout, stderr string, code int, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &errOut
	app.ExitErrHandler = func(*cli.Context, error) {} // keep os.Exit out of tests
	err = app.Run(append([]string{"pagefs"}, args...))
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		code = ec.ExitCode()
	} else if err != nil {
		code = 1
	}
	return out.String(), errOut.String(), code, err
}

// writeUpstreamLTX writes a 3-page file with the reference encoder
// (github.com/superfly/ltx) and returns its path.
func writeUpstreamLTX(t *testing.T, dir string) string {
	t.Helper()
	var buf bytes.Buffer
	enc, err := upstream.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodeHeader(upstream.Header{
		Version: upstream.Version, PageSize: 4096, Commit: 10, MinTXID: 5, MaxTXID: 7,
		Timestamp: 1700000000123, PreApplyChecksum: upstream.ChecksumFlag | 0x1234,
	}); err != nil {
		t.Fatal(err)
	}
	for _, pgno := range []uint32{2, 3, 10} {
		page := bytes.Repeat([]byte{byte(pgno), 'p', 'a', 'g', 'e'}, 4096/5+1)[:4096]
		if err := enc.EncodePage(upstream.PageHeader{Pgno: pgno}, page); err != nil {
			t.Fatal(err)
		}
	}
	enc.SetPostApplyChecksum(upstream.ChecksumFlag | 0x5678)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, upstream.FormatFilename(5, 7))
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLTXVerify(t *testing.T) {
	dir := t.TempDir()
	good := writeUpstreamLTX(t, dir)
	orig, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("Valid", func(t *testing.T) {
		out, _, code, err := runLTXCommand(t, "ltx", "verify", good)
		if err != nil || code != 0 {
			t.Fatalf("exit %d: %v", code, err)
		}
		if want := good + ": ok (TXID 0000000000000005-0000000000000007, 3 pages)\n"; out != want {
			t.Fatalf("got %q, want %q", out, want)
		}
	})

	bad := map[string]struct {
		data []byte
		msg  string
	}{
		"flipped.ltx":   {flipByte(orig, len(orig)/2), "at offset"},
		"truncated.ltx": {orig[:len(orig)-20], "truncated"},
		"empty.ltx":     {nil, "empty file"},
		"notltx.ltx":    {[]byte(strings.Repeat("SQLite format 3\x00", 10)), "not an LTX file"},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			out, _, code, err := runLTXCommand(t, "ltx", "verify", good, path)
			if code == 0 || err == nil {
				t.Fatalf("exit %d, want failure; output %q", code, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], good+": ok") {
				t.Fatalf("output %q", out)
			}
			if !strings.HasPrefix(lines[1], path+": ") || !strings.Contains(lines[1], tc.msg) {
				t.Fatalf("line %q does not name the file and say %q", lines[1], tc.msg)
			}
			if !strings.Contains(err.Error(), "1 of 2 files invalid") {
				t.Fatalf("error %q", err)
			}
		})
	}

	t.Run("MissingAndDirectory", func(t *testing.T) {
		missing := filepath.Join(dir, "missing.ltx")
		out, _, code, _ := runLTXCommand(t, "ltx", "verify", missing, dir)
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		want := missing + ": no such file\n" + dir + ": is a directory, not an LTX file\n"
		if out != want {
			t.Fatalf("got %q, want %q", out, want)
		}
	})

	t.Run("NoFiles", func(t *testing.T) {
		_, _, code, err := runLTXCommand(t, "ltx", "verify")
		if code != 2 || !strings.Contains(err.Error(), "no FILE given") {
			t.Fatalf("exit %d: %v", code, err)
		}
	})
}

func TestLTXDump(t *testing.T) {
	dir := t.TempDir()
	good := writeUpstreamLTX(t, dir)
	out, _, code, err := runLTXCommand(t, "ltx", "dump", "--pages", good)
	if err != nil || code != 0 {
		t.Fatalf("exit %d: %v", code, err)
	}
	for _, want := range []string{
		"version:             3",
		"page size:           4096",
		"commit:              10 pages",
		"TXID range:          0000000000000005-0000000000000007 (incremental)",
		"timestamp:           2023-11-14T22:13:20.123Z",
		"pre-apply checksum:  8000000000001234",
		"WAL salts:           00000000 00000000",
		"node id:             0",
		"page 2: offset 100, frame ",
		"page 10: offset ",
		"pages:               3",
		"post-apply checksum: 8000000000005678",
		"file checksum:       ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dump output lacks %q:\n%s", want, out)
		}
	}

	orig, _ := os.ReadFile(good)
	trunc := filepath.Join(dir, "trunc.ltx")
	if err := os.WriteFile(trunc, orig[:150], 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, code, _ = runLTXCommand(t, "ltx", "dump", trunc)
	if code != 1 || !strings.Contains(out, "page size:           4096") || !strings.Contains(out, trunc+": invalid LTX file: file truncated") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

func TestLTXHelp(t *testing.T) {
	for _, args := range [][]string{{"ltx", "--help"}, {"ltx", "dump", "--help"}, {"ltx", "verify", "--help"}} {
		out, _, code, err := runLTXCommand(t, args...)
		if err != nil || code != 0 {
			t.Fatalf("%v: exit %d: %v", args, code, err)
		}
		if !strings.Contains(out, "Example") || !strings.Contains(out, "pagefs ltx") {
			t.Errorf("%v: help lacks an example:\n%s", args, out)
		}
	}
}

func flipByte(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x40
	return c
}
