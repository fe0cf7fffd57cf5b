package main

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// machine describes where the benchmark ran.
type machine struct {
	cpus   int
	cpu    string // model name
	memGB  float64
	kernel string // uname -srm
	goVer  string
	disk   string // file system holding the work folder
	pagefs string // pagefs binary and the commit it was built from
}

// describeMachine gathers the machine description for work and bin;
// source says what bin was built from, if known.
func describeMachine(work, bin, source string) machine {
	m := machine{cpus: runtime.NumCPU(), goVer: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	m.cpu = procField("/proc/cpuinfo", "model name")
	var kb int64
	fmt.Sscanf(procField("/proc/meminfo", "MemTotal"), "%d", &kb)
	m.memGB = float64(kb) / (1 << 20)
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		m.kernel = cstr(u.Sysname[:]) + " " + cstr(u.Release[:]) + " " + cstr(u.Machine[:])
	}
	dir, fstype, dev := mountOf(work)
	m.disk = fmt.Sprintf("%s on %s %s (mounted at %s)", work, fstype, dev, dir)
	m.pagefs = bin
	if source != "" {
		m.pagefs += ", built from " + source
	} else if bi, err := buildinfo.ReadFile(bin); err == nil {
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			m.pagefs += " (commit " + rev
			if modified == "true" {
				m.pagefs += " plus uncommitted changes"
			}
			m.pagefs += ")"
		}
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// cstr converts a NUL-terminated utsname field.
func cstr(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// writeReport prints the result table, the machine, the chain verdicts and
// anything pagefs logged as wrong.
func writeReport(w io.Writer, opts options, m machine, start time.Time, sum *summary) {
	fmt.Fprintf(w, "pagefs-bench, %s, %d round(s)%s\n", start.Format("2006-01-02 15:04 MST"), opts.rounds, map[bool]string{true: ", -quick"}[opts.quick])
	fmt.Fprintf(w, "machine: %d CPUs (%s), %.1f GB RAM, %s, %s\n", m.cpus, m.cpu, m.memGB, m.kernel, m.goVer)
	fmt.Fprintf(w, "disk:    %s; native folders and pagefs data dirs both live there\n", m.disk)
	fmt.Fprintf(w, "pagefs:  %s\n", m.pagefs)
	fmt.Fprintf(w, "method:  each round runs every workload natively and through pagefs, back to back, native first in odd rounds and\n")
	fmt.Fprintf(w, "         pagefs first in even ones; each run gets fresh folders, and each pagefs run its own `pagefs mount` process\n")
	fmt.Fprintf(w, "         and data dir. Figures are medians over rounds; ratio = median of per-round pagefs/native;\n")
	fmt.Fprintf(w, "         pagefs CPU = user+system time of the pagefs process during a run; peak RSS = its highest VmHWM.\n\n")

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tnative\tpagefs\tratio\tnative p50/p99\tpagefs p50/p99\tpagefs CPU\tpagefs peak RSS\tratio per round")
	for _, r := range sum.results {
		var nat, mnt []float64
		var np50, np99, mp50, mp99, cpu []time.Duration
		for _, s := range r.native {
			nat, np50, np99 = append(nat, s.rate), append(np50, s.p50), append(np99, s.p99)
		}
		for _, s := range r.mounted {
			mnt, mp50, mp99 = append(mnt, s.rate), append(mp50, s.p50), append(mp99, s.p99)
			cpu = append(cpu, s.cpu)
		}
		var per []string
		for _, x := range r.ratios {
			per = append(per, fmt.Sprintf("%.2f", x))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.w.name,
			orDash(len(nat) > 0, formatRate(median(nat), r.w.unit)),
			orDash(len(mnt) > 0, formatRate(median(mnt), r.w.unit)),
			orDash(len(r.ratios) > 0, fmt.Sprintf("%.2fx", median(r.ratios))),
			orDash(len(nat) > 0, formatDur(median(np50))+"/"+formatDur(median(np99))),
			orDash(len(mnt) > 0, formatDur(median(mp50))+"/"+formatDur(median(mp99))),
			orDash(len(mnt) > 0, fmt.Sprintf("%.2fs", median(cpu).Seconds())),
			orDash(r.peakRSS > 0, fmt.Sprintf("%.0f MB", float64(r.peakRSS)/1e6)),
			strings.Join(per, " "))
	}
	tw.Flush()

	fmt.Fprintf(w, "\nworkloads (modernc.org/sqlite; p50/p99 are per operation, per request or, for bulk-load, per transaction):\n")
	for _, r := range sum.results {
		fmt.Fprintf(w, "  %-17s %s\n", r.w.name, r.w.desc)
	}

	fmt.Fprintf(w, "\nLTX chains (mount.ReplayChain of <data>/<db>/ltx/0, compared byte for byte with the database read through the\nmount after PRAGMA wal_checkpoint(TRUNCATE) and integrity_check, and with the backing file after pagefs stopped):\n")
	for _, c := range sum.checks {
		fmt.Fprintf(w, "  %s %s round %d: %s\n", map[bool]string{true: "PASS", false: "FAIL"}[c.ok], c.workload, c.round, c.msg)
	}
	if len(sum.checks) == 0 {
		fmt.Fprintf(w, "  FAIL: no chain was verified\n")
	}
	if len(sum.notes) > 0 {
		fmt.Fprintf(w, "\npagefs logged warnings or errors:\n")
		for _, n := range sum.notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	if len(sum.failures) > 0 {
		fmt.Fprintf(w, "\nfailures:\n")
		for _, f := range sum.failures {
			fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(f, "\n", "\n    "))
		}
	}
	if len(sum.kept) > 0 {
		fmt.Fprintf(w, "\nkept for inspection: %s\n", strings.Join(sum.kept, " "))
	}
	verdict := "PASS"
	if !sum.passed() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "\n%s: %d chain(s) checked, %d run failure(s)\n", verdict, len(sum.checks), len(sum.failures))
}

// formatRate prints a rate in its unit.
func formatRate(v float64, unit string) string {
	if unit == "MB/s" {
		return fmt.Sprintf("%.1f %s", v, unit)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

// formatDur prints a latency compactly: microseconds below a millisecond.
func formatDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dus", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// orDash returns s if ok, else "-".
func orDash(ok bool, s string) string {
	if ok {
		return s
	}
	return "-"
}

// reportString renders the report into a string, for stdout and -o.
func reportString(opts options, m machine, start time.Time, sum *summary) string {
	var b bytes.Buffer
	writeReport(&b, opts, m, start, sum)
	return b.String()
}
