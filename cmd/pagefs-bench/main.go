// Command pagefs-bench measures what a pagefs mount costs SQLite.
//
// It runs the same modernc.org/sqlite workloads (WAL and DELETE-journal
// 1-row write transactions, point reads, a bulk load, four connections
// mixing reads and writes, a connection per request) in a plain folder and
// through a `pagefs mount` on the same disk, alternating the two over
// several rounds, and prints per workload the native and mounted figures,
// their ratio (median over rounds), p50/p99 latencies and pagefs's peak
// resident memory. It then replays every mounted database's LTX chain and
// compares the image byte for byte with the database, so that a fast but
// wrong mount cannot pass; any FAIL makes it exit with status 1.
//
// It needs root and /dev/fuse. Usage:
//
//	go run ./cmd/pagefs-bench [-rounds 3] [-quick] [-only a,b] [-o FILE]
//	                          [-dir DIR] [-pagefs BIN] [-wal-writes N] [-timeout D] [-keep]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	rounds    int
	dir       string
	quick     bool
	only      []string
	pagefs    string
	out       string
	walWrites int
	timeout   time.Duration
	keep      bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	sum, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pagefs-bench: %v\n", err)
		os.Exit(2)
	}
	if !sum.passed() {
		os.Exit(1)
	}
}

// parseFlags reads the command line.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var only string
	fs := flag.NewFlagSet("pagefs-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every workload natively and through pagefs")
	fs.StringVar(&o.dir, "dir", os.TempDir(), "folder for the native folders and the pagefs data dirs and mountpoints")
	fs.BoolVar(&o.quick, "quick", false, "small counts, for a smoke run")
	fs.StringVar(&only, "only", "", "comma-separated workload names to run (default all)")
	fs.StringVar(&o.pagefs, "pagefs", "", "prebuilt pagefs binary (default: go build this module's cmd/pagefs)")
	fs.StringVar(&o.out, "o", "", "also write the report to this file")
	fs.IntVar(&o.walWrites, "wal-writes", 0, "commits of wal-write-normal (default 20000, 1500 with -quick)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "longest a single setup or run may take before it counts as a stall")
	fs.BoolVar(&o.keep, "keep", false, "keep the work folder (logs, and the data of failed runs are kept anyway)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.rounds < 1 {
		return o, fmt.Errorf("-rounds must be at least 1")
	}
	for _, n := range strings.Split(only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			o.only = append(o.only, n)
		}
	}
	return o, nil
}

// selectWorkloads returns the workloads opts asks for.
func selectWorkloads(o options) ([]*workload, error) {
	sz := fullSizes()
	if o.quick {
		sz = quickSizes()
	}
	if o.walWrites > 0 {
		sz.walWrites = o.walWrites
	}
	all := workloads(sz)
	if len(o.only) == 0 {
		return all, nil
	}
	var ws []*workload
	var names []string
	for _, w := range all {
		names = append(names, w.name)
	}
	for _, n := range o.only {
		found := false
		for _, w := range all {
			if w.name == n {
				ws, found = append(ws, w), true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown workload %q (have %s)", n, strings.Join(names, ", "))
		}
	}
	return ws, nil
}

// run is the whole benchmark: it returns the summary whose passed method
// decides the exit status, or an error if it could not run at all.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (*summary, error) {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return nil, err
	}
	ws, err := selectWorkloads(opts)
	if err != nil {
		return nil, err
	}
	if reason := fuseUnavailable(); reason != "" {
		return nil, fmt.Errorf("cannot mount: %s", reason)
	}
	if err := os.MkdirAll(opts.dir, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(opts.dir, "pagefs-bench-")
	if err != nil {
		return nil, err
	}
	if work, err = filepath.Abs(work); err != nil {
		return nil, err
	}
	bin, source := opts.pagefs, ""
	if bin == "" {
		fmt.Fprintf(stdout, "building pagefs...\n")
		if bin, source, err = buildPagefs(ctx, work); err != nil {
			os.RemoveAll(work)
			return nil, err
		}
	}
	m := describeMachine(work, bin, source)
	start := time.Now()
	fmt.Fprintf(stdout, "work folder %s; %d workload(s), %d round(s)\n", work, len(ws), opts.rounds)
	r := &runner{opts: opts, bin: bin, work: work, progress: stdout}
	sum := r.run(ctx, ws)

	report := reportString(opts, m, start, sum)
	fmt.Fprintf(stdout, "\n%s", report)
	if opts.out != "" {
		if err := os.WriteFile(opts.out, []byte(report), 0o644); err != nil {
			return sum, err
		}
	}
	switch {
	case opts.keep:
		fmt.Fprintf(stdout, "work folder kept: %s\n", work)
	case len(sum.kept) > 0 || len(sum.notes) > 0 || len(sum.failures) > 0:
		fmt.Fprintf(stdout, "work folder kept for the logs: %s\n", work)
	default:
		os.RemoveAll(work)
	}
	return sum, nil
}
