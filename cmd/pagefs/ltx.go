package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/pagefs/pagefs/ltx"
	"github.com/urfave/cli/v2"
)

// ltxCommand groups the commands that inspect LTX files on disk.
func ltxCommand() *cli.Command {
	return &cli.Command{
		Name:      "ltx",
		Usage:     "inspect and check LTX transaction files",
		UsageText: "pagefs ltx dump [--pages] FILE...\npagefs ltx verify FILE...",
		Description: "LTX files hold the pages that one or more SQLite transactions changed, as pagefs\n" +
			"and Litestream 0.5 write them (format version 3).\n\n" +
			"Example:\n" +
			"   pagefs ltx verify /var/lib/pagefs/app.db/ltx/0/*.ltx",
		Subcommands: []*cli.Command{ltxDumpCommand(), ltxVerifyCommand()},
	}
}

func ltxDumpCommand() *cli.Command {
	return &cli.Command{
		Name:      "dump",
		Usage:     "print the header, page count and checksums of LTX files",
		UsageText: "pagefs ltx dump [--pages] FILE...",
		Description: "dump prints each file's header fields (version, flags, page size, commit size,\n" +
			"TXID range, timestamp, pre-apply checksum, WAL offset, size and salts, node ID),\n" +
			"its page count and its post-apply and file checksums. It reads and checks the\n" +
			"whole file; a damaged file is reported after what could be read, and the exit\n" +
			"status is 1.\n\n" +
			"Example:\n" +
			"   pagefs ltx dump --pages 0000000000000001-0000000000000001.ltx",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "pages", Usage: "list every page number with its frame offset and compressed size"},
		},
		Action: func(c *cli.Context) error {
			return forEachLTXFile(c, "dump", func(path string, f *os.File) error {
				return dumpLTX(c.App.Writer, path, f, c.Bool("pages"))
			})
		},
	}
}

func ltxVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check LTX files completely: structure, page order and every checksum",
		UsageText: "pagefs ltx verify FILE...",
		Description: "verify decodes every file in full and prints one line per file:\n" +
			"   FILE: ok (TXID a-b, N pages)\n" +
			"   FILE: what is wrong (at offset X, page N)\n" +
			"The exit status is 0 only if every file is valid.\n\n" +
			"Example:\n" +
			"   pagefs ltx verify backup/app.db/ltx/1/*.ltx",
		Action: func(c *cli.Context) error {
			return forEachLTXFile(c, "verify", func(path string, f *os.File) error {
				d := ltx.NewDecoder(f)
				if err := d.Verify(); err != nil {
					return err
				}
				h := d.Header()
				fmt.Fprintf(c.App.Writer, "%s: ok (TXID %s-%s, %d pages)\n", path, h.MinTXID, h.MaxTXID, d.PageN())
				return nil
			})
		},
	}
}

// forEachLTXFile opens each FILE argument and calls fn with it. A file that
// cannot be opened or that fn rejects gets a "FILE: problem" line on the
// command's writer; the command then fails with exit status 1.
func forEachLTXFile(c *cli.Context, name string, fn func(path string, f *os.File) error) error {
	if c.NArg() == 0 {
		return cli.Exit(fmt.Sprintf("pagefs ltx %s: no FILE given (usage: pagefs ltx %s FILE...)", name, name), 2)
	}
	bad := 0
	for _, path := range c.Args().Slice() {
		if err := withLTXFile(path, fn); err != nil {
			bad++
			fmt.Fprintf(c.App.Writer, "%s: %s\n", path, describeLTXError(err))
		}
	}
	if bad > 0 {
		return cli.Exit(fmt.Sprintf("pagefs ltx %s: %d of %d files invalid", name, bad, c.NArg()), 1)
	}
	return nil
}

func withLTXFile(path string, fn func(string, *os.File) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return err
	} else if fi.IsDir() {
		return errIsDir
	} else if !fi.Mode().IsRegular() && fi.Mode()&fs.ModeNamedPipe == 0 && fi.Mode()&fs.ModeCharDevice == 0 {
		return fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	return fn(path, f)
}

var errIsDir = errors.New("is a directory, not an LTX file")

// describeLTXError turns an error into the text after "FILE: ".
func describeLTXError(err error) string {
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.As(err, &pe):
		return fmt.Sprintf("%s: %v", pe.Op, pe.Err)
	case errors.Is(err, ltx.ErrInvalidFile):
		return "invalid LTX file: " + err.Error()
	default:
		return err.Error()
	}
}

// dumpLTX prints a file's header as soon as it is read, then its pages (if
// pages), then its trailer once the whole file is verified.
func dumpLTX(w io.Writer, path string, r io.Reader, pages bool) error {
	d := ltx.NewDecoder(r)
	fmt.Fprintf(w, "%s:\n", path)
	if err := d.DecodeHeader(); err != nil {
		return err
	}
	h := d.Header()
	kind := "incremental"
	if h.IsSnapshot() {
		kind = "snapshot"
	}
	fmt.Fprintf(w, "  version:             %d\n", h.Version)
	fmt.Fprintf(w, "  flags:               0x%08x%s\n", h.Flags, flagNames(h.Flags))
	fmt.Fprintf(w, "  page size:           %d\n", h.PageSize)
	fmt.Fprintf(w, "  commit:              %d pages\n", h.Commit)
	fmt.Fprintf(w, "  TXID range:          %s-%s (%s)\n", h.MinTXID, h.MaxTXID, kind)
	fmt.Fprintf(w, "  timestamp:           %s\n", time.UnixMilli(h.Timestamp).UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	fmt.Fprintf(w, "  pre-apply checksum:  %s\n", h.PreApplyChecksum)
	fmt.Fprintf(w, "  WAL offset:          %d\n", h.WALOffset)
	fmt.Fprintf(w, "  WAL size:            %d\n", h.WALSize)
	fmt.Fprintf(w, "  WAL salts:           %08x %08x\n", h.WALSalt1, h.WALSalt2)
	fmt.Fprintf(w, "  node id:             %d\n", h.NodeID)

	data := make([]byte, h.PageSize)
	for {
		var ph ltx.PageHeader
		if err := d.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if pages {
			off, size := d.LastFrame()
			payload := size - ltx.PageHeaderSize
			if ph.Flags&ltx.PageHeaderFlagSize != 0 {
				payload -= ltx.PageSizeSize
			}
			fmt.Fprintf(w, "  page %d: offset %d, frame %d bytes, %d bytes compressed\n", ph.Pgno, off, size, payload)
		}
	}
	if err := d.Close(); err != nil {
		return err
	}
	t := d.Trailer()
	fmt.Fprintf(w, "  pages:               %d\n", d.PageN())
	fmt.Fprintf(w, "  post-apply checksum: %s\n", t.PostApplyChecksum)
	fmt.Fprintf(w, "  file checksum:       %s\n", t.FileChecksum)
	fmt.Fprintf(w, "  file size:           %d bytes\n", d.N())
	return nil
}

func flagNames(flags uint32) string {
	if flags&ltx.HeaderFlagNoChecksum != 0 {
		return " (no-checksum)"
	}
	return ""
}
