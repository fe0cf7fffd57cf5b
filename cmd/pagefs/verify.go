package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pagefs/pagefs/replicate"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check a backup end to end",
		ArgsUsage: "URL[/DB]",
		Description: `Checks the backup of database DB at URL, or of every database under URL:
every file is downloaded and decoded (header, pages, page index, file
checksum); files of a level must neither overlap nor leave gaps; each
file's checksums must continue the files before it; the newest TXID must be
restorable. Prints a summary per database and every problem with the
object key or path it concerns. Exits 1 if anything is wrong.

Examples:
   pagefs verify 's3://backups/prod?endpoint=http://127.0.0.1:9000'
   pagefs verify file:///backups/app.db`,
		Action: runVerify,
	}
}

func runVerify(c *cli.Context) error {
	if c.Args().Len() != 1 {
		return cli.Exit("pagefs verify: want one URL[/DB] argument (see pagefs verify --help)", 2)
	}
	u, err := replicate.ParseURL(c.Args().First())
	if err != nil {
		return cli.Exit("pagefs verify: "+err.Error(), 2)
	}
	dest, err := replicate.NewDestination(u)
	if err != nil {
		return cli.Exit("pagefs verify: "+err.Error(), 1)
	}
	ctx, stop := runCtx(c)
	defer stop()
	dbs, err := dest.DBs(ctx)
	if err != nil {
		return cli.Exit("pagefs verify: "+err.Error(), 1)
	}
	if slices.Contains(dbs, ".") {
		dbs = []string{"."} // the URL names one database
	}
	if len(dbs) == 0 {
		return cli.Exit(fmt.Sprintf("pagefs verify: no backup at %s (no level folders under it)", u), 1)
	}
	w := c.App.Writer
	bad := 0
	for _, db := range dbs {
		name := db
		if db == "." {
			_, name = u.Split()
		}
		prog := newProgressLine(c, "verifying "+name)
		rep, err := replicate.Verify(ctx, dest.Client(db), func(done, total int) { prog.set(done, total, "") })
		prog.done()
		if err != nil {
			return cli.Exit(fmt.Sprintf("pagefs verify: %s: %v", name, err), 1)
		}
		printReport(w, name, rep)
		if len(rep.Problems) > 0 {
			bad++
		}
	}
	if bad > 0 {
		return cli.Exit(fmt.Sprintf("pagefs verify: problems in %d of %d databases", bad, len(dbs)), 1)
	}
	return nil
}

func printReport(w io.Writer, name string, rep *replicate.VerifyReport) {
	status := "ok"
	if n := len(rep.Problems); n > 0 {
		status = fmt.Sprintf("%d PROBLEMS", n)
	}
	restorable := "not restorable"
	if rep.Head > 0 {
		restorable = fmt.Sprintf("restorable to TXID %s (%d) from %d files", rep.Head, uint64(rep.Head), rep.Plan)
	}
	var levels []string
	for level, lr := range rep.Levels {
		if lr.Files > 0 {
			levels = append(levels, fmt.Sprintf("L%d %d files %s (TXIDs %d-%d)", level, lr.Files, humanBytes(lr.Bytes), uint64(lr.Min), uint64(lr.Max)))
		}
	}
	fmt.Fprintf(w, "%s: %s, %s; %s\n", name, status, restorable, strings.Join(levels, ", "))
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "  %s\n", p)
	}
}
