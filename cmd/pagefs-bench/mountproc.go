package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// fuseUnavailable says why this process cannot mount FUSE, or "" if it can.
func fuseUnavailable() string {
	if os.Geteuid() != 0 {
		return "pagefs-bench mounts FUSE and needs root"
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return "no /dev/fuse: " + err.Error()
	}
	return ""
}

// buildPagefs builds the pagefs command of this module into dir and says
// what it was built from.
func buildPagefs(ctx context.Context, dir string) (bin, source string, err error) {
	bin = filepath.Join(dir, "pagefs")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/pagefs/pagefs/cmd/pagefs")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build pagefs: %w\n%s", err, out)
	}
	return bin, sourceState(ctx), nil
}

// sourceState names the commit of the module's working tree and the
// uncommitted Go files (outside this command and tests) that went into a
// build, since several people may share the tree. It returns "" outside git.
func sourceState(ctx context.Context) string {
	root, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return ""
	}
	dir := strings.TrimSpace(string(root))
	rev, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	s := "commit " + strings.TrimSpace(string(rev))
	st, err := exec.CommandContext(ctx, "git", "-C", dir, "status", "--porcelain", "--", "*.go", "go.mod", "go.sum").Output()
	if err != nil {
		return s
	}
	var dirty []string
	for _, l := range strings.Split(string(st), "\n") {
		if len(l) < 4 {
			continue
		}
		f := l[3:]
		if strings.HasSuffix(f, "_test.go") || strings.HasPrefix(f, "cmd/pagefs-bench/") || strings.HasPrefix(f, "integration/") {
			continue
		}
		dirty = append(dirty, f)
	}
	if len(dirty) > 0 {
		s += " plus uncommitted changes to " + strings.Join(dirty, ", ")
	}
	return s
}

// pagefsProc is one `pagefs mount` subprocess. Its stdout and stderr go to
// a log file.
type pagefsProc struct {
	cmd     *exec.Cmd
	mnt     string
	logPath string
	exited  chan struct{} // closed when the process has exited
	waitErr error         // set before exited is closed
}

// startPagefs runs `bin mount --data data mnt` and waits until mnt is a FUSE
// mount.
func startPagefs(bin, data, mnt, logPath string) (*pagefsProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "mount", "--data", data, mnt)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &pagefsProc{cmd: cmd, mnt: mnt, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !isFuseMount(mnt) {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("pagefs exited before mounting (%v); log %s:\n%s", p.waitErr, logPath, p.logTail(20))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.abort()
			return nil, fmt.Errorf("%s is not mounted 30s after starting pagefs; log %s:\n%s", mnt, logPath, p.logTail(20))
		}
	}
	return p, nil
}

// pid returns the process id.
func (p *pagefsProc) pid() int { return p.cmd.Process.Pid }

// memory returns the resident set size now and its peak, in bytes, from
// /proc/<pid>/status.
func (p *pagefsProc) memory() (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm, nil
}

// cpuTime returns the CPU time (user plus system) the process has used,
// from /proc/<pid>/stat.
func (p *pagefsProc) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is the first, utime the 12th and stime the 13th.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", p.pid())
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", p.pid())
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticksPerSecond, nil
}

// checkMounted returns an error if the mount is gone or pagefs has exited:
// a vanished mount would silently send the workload to the plain folder
// underneath.
func (p *pagefsProc) checkMounted() error {
	if !p.alive() {
		return fmt.Errorf("pagefs exited (%v); log tail:\n%s", p.waitErr, p.logTail(20))
	}
	if !isFuseMount(p.mnt) {
		return fmt.Errorf("%s is no longer a FUSE mount although pagefs (pid %d) is still running", p.mnt, p.pid())
	}
	return nil
}

// stop sends SIGTERM and waits up to timeout for pagefs to unmount and
// exit. If it does not, it takes a goroutine dump (SIGQUIT, into the log),
// kills it and detaches the mount.
func (p *pagefsProc) stop(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.abort()
		return fmt.Errorf("pagefs did not exit within %s of SIGTERM (goroutine dump in %s)", timeout, p.logPath)
	}
	var errs []error
	if p.waitErr != nil {
		errs = append(errs, fmt.Errorf("pagefs exited with %v after SIGTERM; log tail:\n%s", p.waitErr, p.logTail(20)))
	}
	if isFuseMount(p.mnt) {
		errs = append(errs, fmt.Errorf("%s is still mounted after pagefs exited", p.mnt))
		_ = syscall.Unmount(p.mnt, syscall.MNT_DETACH)
	}
	return errors.Join(errs...)
}

// abort makes a stuck pagefs dump its goroutines into its log (SIGQUIT),
// kills it if that does not end it, and detaches the mount, so that calls
// blocked on the mount fail instead of hanging.
func (p *pagefsProc) abort() {
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	if isFuseMount(p.mnt) {
		_ = syscall.Unmount(p.mnt, syscall.MNT_DETACH)
	}
}

// alive reports whether the process is still running.
func (p *pagefsProc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// logTail returns the last n lines of the log.
func (p *pagefsProc) logTail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logProblems returns the log lines that show something wrong (warnings,
// errors, panics, goroutine dumps) and how many there are in all; at most
// max lines are returned.
func logProblems(path string, max int) (lines []string, total int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") ||
			strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") ||
			strings.HasPrefix(l, "SIGQUIT") || strings.HasPrefix(l, "pagefs:") {
			total++
			if len(lines) < max {
				lines = append(lines, l)
			}
		}
	}
	return lines, total, sc.Err()
}

// isFuseMount reports whether path is a mount point of a FUSE file system,
// according to /proc/self/mounts.
func isFuseMount(path string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && unescapeMount(f[1]) == path && strings.HasPrefix(f[2], "fuse") {
			return true
		}
	}
	return false
}

// mountOf returns the mount point, file system type and device holding path.
func mountOf(path string) (dir, fstype, dev string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "?", "?", "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		mp := unescapeMount(f[1])
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(dir) {
			dir, fstype, dev = mp, f[2], f[0]
		}
	}
	return dir, fstype, dev
}

// unescapeMount undoes the octal escapes (\040 for a space) of a
// /proc/self/mounts field.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
