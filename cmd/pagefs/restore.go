package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/urfave/cli/v2"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/replicate"
)

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "restore a database from a backup, to its newest state or a point in time",
		ArgsUsage: "URL/DB",
		Description: `Restores the database DB from the backup at URL into a plain SQLite file.
URL is a backup URL as given to pagefs mount --backup (file:///dir or
s3://bucket/prefix?endpoint=...); a backup Litestream 0.5 wrote works too.

It reads the fewest files (the newest snapshot at or before the target,
then the largest compactions, then single transactions), verifies every
checksum on the way, writes to a temporary file, syncs it and renames it
into place, then prints the TXID and the commit time restored. It refuses
to overwrite an existing file.

Examples:
   pagefs restore -o /tmp/app.db 's3://backups/prod/app.db?endpoint=http://127.0.0.1:9000'
   pagefs restore --timestamp 2024-05-06T07:08:09Z file:///backups/app.db
   pagefs restore --txid 1234 -o old.db file:///backups/app.db`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "txid", Usage: "restore to transaction `N` (decimal, or 16 hex digits as in LTX file names)"},
			&cli.StringFlag{Name: "timestamp", Usage: "restore the last transaction committed at or before `TIME` (RFC 3339, e.g. 2024-05-06T07:08:09Z)"},
			&cli.StringFlag{Name: "o", Aliases: []string{"output"}, Usage: "write the database to `FILE`", DefaultText: "./DB"},
		},
		Action: runRestore,
	}
}

// parseTXID reads a TXID in decimal, or as 16 hex digits (or 0x...).
func parseTXID(s string) (ltx.TXID, error) {
	if len(s) == 16 {
		if t, err := ltx.ParseTXID(s); err == nil {
			return t, nil
		}
	}
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		v, err := strconv.ParseUint(h, 16, 64)
		return ltx.TXID(v), err
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("--txid %q: want a positive decimal number or 16 hex digits", s)
	}
	return ltx.TXID(v), nil
}

func runRestore(c *cli.Context) error {
	fail := func(format string, args ...any) error {
		return cli.Exit("pagefs restore: "+fmt.Sprintf(format, args...), 1)
	}
	if c.Args().Len() != 1 {
		return cli.Exit("pagefs restore: want one URL/DB argument (see pagefs restore --help)", 2)
	}
	var opt replicate.RestoreOptions
	if v := c.String("txid"); v != "" {
		t, err := parseTXID(v)
		if err != nil {
			return cli.Exit("pagefs restore: "+err.Error(), 2)
		}
		opt.TXID = t
	}
	if v := c.String("timestamp"); v != "" {
		if opt.TXID != 0 {
			return cli.Exit("pagefs restore: give --txid or --timestamp, not both", 2)
		}
		ts, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return cli.Exit(fmt.Sprintf("pagefs restore: --timestamp %q: want RFC 3339, e.g. 2024-05-06T07:08:09Z", v), 2)
		}
		opt.Timestamp = ts
	}
	u, err := replicate.ParseURL(c.Args().First())
	if err != nil {
		return cli.Exit("pagefs restore: "+err.Error(), 2)
	}
	_, db := u.Split()
	if db == "" || db == "." || db == "/" {
		return cli.Exit("pagefs restore: the URL must end with the database name, as in s3://bucket/prefix/app.db", 2)
	}
	out := c.String("o")
	if out == "" {
		out = db
	}
	client, err := replicate.NewClientFromURL(c.Args().First())
	if err != nil {
		return fail("%v", err)
	}
	ctx, stop := runCtx(c)
	defer stop()
	prog := newProgressLine(c, "restoring "+db)
	if prog != nil {
		opt.Progress = prog.update
	}
	start := time.Now()
	res, err := replicate.Restore(ctx, client, out, opt)
	prog.done()
	if errors.Is(err, replicate.ErrTxNotAvailable) {
		return fail("%v", err)
	} else if err != nil {
		return fail("%s: %v", db, err)
	}
	abs, _ := filepath.Abs(out)
	fmt.Fprintf(c.App.Writer, "restored %s to %s: TXID %s (%d), committed %s; %d files, %s in %s\n",
		db, abs, res.Pos.TXID, uint64(res.Pos.TXID), res.Timestamp.Format(time.RFC3339Nano),
		res.Files, humanBytes(res.Bytes), time.Since(start).Round(time.Millisecond))
	return nil
}

// progressLine redraws one line on a terminal, at most ten times a second.
type progressLine struct {
	mu    sync.Mutex
	w     io.Writer
	what  string
	last  time.Time
	shown bool
}

// newProgressLine returns a progress line on the command's error output if
// that is a terminal, else nil (whose methods do nothing).
func newProgressLine(c *cli.Context, what string) *progressLine {
	w := c.App.ErrWriter
	if w == nil {
		w = os.Stderr
	}
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		return &progressLine{w: f, what: what}
	}
	return nil
}

func (p *progressLine) update(pr replicate.Progress) {
	p.set(pr.Files, pr.TotalFiles, fmt.Sprintf("%s/%s", humanBytes(pr.Bytes), humanBytes(pr.TotalBytes)))
}

func (p *progressLine) set(done, total int, extra string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 100*time.Millisecond && done != total {
		return
	}
	p.last = time.Now()
	p.shown = true
	fmt.Fprintf(p.w, "\r%s: %d/%d files %s   ", p.what, done, total, extra)
}

func (p *progressLine) done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// runCtx is the context of a command that may be interrupted.
func runCtx(c *cli.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
}
