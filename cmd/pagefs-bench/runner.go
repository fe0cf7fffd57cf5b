package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// sample is the outcome of one timed run.
type sample struct {
	rate     float64 // units per second
	p50, p99 time.Duration
	elapsed  time.Duration
	cpu      time.Duration // CPU time pagefs used during the run (mounted runs only)
}

// result gathers every round of one workload.
type result struct {
	w       *workload
	native  []sample
	mounted []sample
	ratios  []float64 // mounted rate / native rate, per round with both
	peakRSS int64     // highest VmHWM of pagefs over the mounted runs, bytes
}

// summary is everything a benchmark run found.
type summary struct {
	results  []*result
	checks   []check  // one per mounted run that got as far as verifying
	failures []string // runs that failed outright (errors, stalls, crashes)
	notes    []string // pagefs log lines that show warnings or errors
	kept     []string // folders kept for inspection
}

// passed reports whether every chain verified and no run failed.
func (s *summary) passed() bool {
	if len(s.failures) > 0 || len(s.checks) == 0 {
		return false
	}
	for _, c := range s.checks {
		if !c.ok {
			return false
		}
	}
	return true
}

// runner runs workloads natively and through pagefs, alternating.
type runner struct {
	opts     options
	bin      string    // pagefs binary
	work     string    // folder for every run's files
	progress io.Writer // one line per finished run
}

// run runs every workload opts.rounds times on each side. Odd rounds run
// native first, even rounds pagefs first. Every run gets fresh folders and
// every mounted run its own pagefs process and data dir.
func (r *runner) run(ctx context.Context, ws []*workload) *summary {
	sum := &summary{}
	for _, w := range ws {
		sum.results = append(sum.results, &result{w: w})
	}
	for round := 1; round <= r.opts.rounds; round++ {
		for _, res := range sum.results {
			order := []bool{false, true}
			if round%2 == 0 {
				order = []bool{true, false}
			}
			var nat, mnt *sample
			for _, mounted := range order {
				if ctx.Err() != nil {
					sum.failures = append(sum.failures, "interrupted: "+ctx.Err().Error())
					return sum
				}
				var s *sample
				if mounted {
					s = r.mounted(ctx, res, round, sum)
					mnt = s
				} else {
					s = r.native(ctx, res, round, sum)
					nat = s
				}
				r.report(res.w, round, mounted, s)
			}
			if nat != nil {
				res.native = append(res.native, *nat)
			}
			if mnt != nil {
				res.mounted = append(res.mounted, *mnt)
			}
			if nat != nil && mnt != nil && nat.rate > 0 {
				res.ratios = append(res.ratios, mnt.rate/nat.rate)
			}
		}
	}
	return sum
}

// report prints one progress line.
func (r *runner) report(w *workload, round int, mounted bool, s *sample) {
	where := "native"
	if mounted {
		where = "pagefs"
	}
	if s == nil {
		fmt.Fprintf(r.progress, "round %d %-17s %-6s FAILED\n", round, w.name, where)
		return
	}
	cpu := ""
	if mounted {
		cpu = fmt.Sprintf("  pagefs CPU %.2fs", s.cpu.Seconds())
	}
	fmt.Fprintf(r.progress, "round %d %-17s %-6s %12s  p50 %-8s p99 %-8s %6.2fs%s\n",
		round, w.name, where, formatRate(s.rate, w.unit), formatDur(s.p50), formatDur(s.p99), s.elapsed.Seconds(), cpu)
}

// native runs a workload in a fresh plain folder.
func (r *runner) native(ctx context.Context, res *result, round int, sum *summary) *sample {
	w := res.w
	dir := filepath.Join(r.work, fmt.Sprintf("r%d-%s", round, w.name), "native")
	fail := func(err error) *sample {
		sum.failures = append(sum.failures, fmt.Sprintf("%s round %d native: %v", w.name, round, err))
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, w.name+".db")
	if err := guard(ctx, r.opts.timeout, nil, func(ctx context.Context) error { return w.setup(ctx, path) }); err != nil {
		return fail(fmt.Errorf("setup: %w", err))
	}
	var m measure
	err := guard(ctx, r.opts.timeout, nil, func(ctx context.Context) (err error) {
		m, err = w.run(ctx, path)
		return err
	})
	if err != nil {
		return fail(err)
	}
	return newSample(m)
}

// mounted runs a workload through a fresh pagefs mount with its own data
// dir, then verifies the database's LTX chain.
func (r *runner) mounted(ctx context.Context, res *result, round int, sum *summary) *sample {
	w := res.w
	base := filepath.Join(r.work, fmt.Sprintf("r%d-%s", round, w.name))
	data, mnt := filepath.Join(base, "data"), filepath.Join(base, "mnt")
	logPath := filepath.Join(base, "pagefs.log")
	label := fmt.Sprintf("%s round %d pagefs", w.name, round)
	keep := false
	defer func() {
		if keep {
			sum.kept = append(sum.kept, base)
			return
		}
		for _, p := range []string{data, mnt, filepath.Join(base, "live.db"), filepath.Join(base, "replay.db")} {
			os.RemoveAll(p)
		}
	}()
	fail := func(err error) *sample {
		keep = true
		sum.failures = append(sum.failures, fmt.Sprintf("%s: %v", label, err))
		return nil
	}
	for _, d := range []string{data, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail(err)
		}
	}
	p, err := startPagefs(r.bin, data, mnt, logPath)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if p.alive() { // a failed run: stop pagefs (or dump and kill it)
			if err := p.stop(30 * time.Second); err != nil {
				sum.failures = append(sum.failures, fmt.Sprintf("%s: stop: %v", label, err))
			}
		}
		lines, total, err := logProblems(logPath, 10)
		if err != nil {
			sum.notes = append(sum.notes, fmt.Sprintf("%s: reading log: %v", label, err))
		}
		if total > 0 {
			keep = true
			sum.notes = append(sum.notes, fmt.Sprintf("%s: %d warning/error lines in %s, first ones:", label, total, logPath))
			for _, l := range lines {
				sum.notes = append(sum.notes, "    "+l)
			}
		}
	}()
	stalled := func() {
		sum.failures = append(sum.failures, fmt.Sprintf("%s: no progress after %s; pagefs sent SIGQUIT (goroutine dump in %s)", label, r.opts.timeout, logPath))
		p.abort()
	}
	path := filepath.Join(mnt, w.name+".db")
	if err := guard(ctx, r.opts.timeout, stalled, func(ctx context.Context) error { return w.setup(ctx, path) }); err != nil {
		return fail(fmt.Errorf("setup: %w", errors.Join(err, p.checkMounted())))
	}
	if err := p.checkMounted(); err != nil {
		return fail(fmt.Errorf("after setup: %w", err))
	}
	cpu0, _ := p.cpuTime()
	var m measure
	err = guard(ctx, r.opts.timeout, stalled, func(ctx context.Context) (err error) {
		m, err = w.run(ctx, path)
		return err
	})
	if merr := p.checkMounted(); merr != nil {
		return fail(fmt.Errorf("during the run: %w", errors.Join(merr, err)))
	}
	if _, hwm, err := p.memory(); err == nil {
		res.peakRSS = max(res.peakRSS, hwm)
	}
	if err != nil {
		return fail(err)
	}
	s := newSample(m)
	if cpu1, err := p.cpuTime(); err == nil {
		s.cpu = cpu1 - cpu0
	}

	live := filepath.Join(base, "live.db")
	snapErr := guard(ctx, r.opts.timeout, stalled, func(ctx context.Context) error { return snapshotLive(ctx, path, live) })
	// The snapshot must have come through the mount, not the folder under it.
	snapErr = errors.Join(snapErr, p.checkMounted())
	if err := p.stop(time.Minute); err != nil {
		sum.failures = append(sum.failures, fmt.Sprintf("%s: stop: %v", label, err))
		keep = true
	}
	c := check{workload: w.name, round: round}
	if snapErr != nil {
		c.msg = "checkpoint/integrity_check/read through the mount: " + snapErr.Error()
	} else if c.msg, err = verifyChain(data, w.name+".db", live, filepath.Join(base, "replay.db")); err != nil {
		c.msg = err.Error()
	} else {
		c.ok = true
	}
	if !c.ok {
		keep = true
	}
	sum.checks = append(sum.checks, c)
	return s
}

// guard runs f with a deadline of timeout. If f has not returned by then
// and stalled is set, stalled is called (it should make f's blocked calls
// fail, e.g. by killing pagefs) and f gets 30 more seconds.
func guard(ctx context.Context, timeout time.Duration, stalled func(), f func(context.Context) error) error {
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f(fctx) }()
	select {
	case err := <-done:
		return err
	case <-fctx.Done():
	}
	if ctx.Err() == nil && stalled != nil {
		stalled()
	}
	select {
	case err := <-done:
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("timed out after %s: %w", timeout, err)
	case <-time.After(30 * time.Second):
		return errors.New("still blocked 30s after the deadline; abandoned")
	}
}

// newSample computes the rate and latency percentiles of a measure.
func newSample(m measure) *sample {
	s := &sample{elapsed: m.elapsed}
	if m.elapsed > 0 {
		s.rate = m.amount / m.elapsed.Seconds()
	}
	if len(m.lat) > 0 {
		lat := slices.Clone(m.lat)
		slices.Sort(lat)
		s.p50 = percentile(lat, 50)
		s.p99 = percentile(lat, 99)
	}
	return s
}

// percentile returns the p-th percentile (nearest rank) of sorted values.
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p+99)/100 - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// median returns the median of values (the mean of the middle two for an
// even count), or 0 for none.
func median[T int64 | float64 | time.Duration](values []T) T {
	if len(values) == 0 {
		return 0
	}
	v := slices.Clone(values)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
