package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountProc is pagefs running as its own process, so a test can SIGKILL it.
type mountProc struct {
	t    testing.TB
	Dir  string
	Data string
	Log  string // stderr of every run, appended
	cmd  *exec.Cmd
	pid  int // of the running pagefs; 0 when stopped
	args []string
}

// startMountProc runs `pagefs mount` on data (a fresh folder if empty) and
// waits until the mount is up.
func startMountProc(t testing.TB, data string, args ...string) *mountProc {
	t.Helper()
	requireFUSE(t)
	if data == "" {
		data = t.TempDir()
	}
	p := &mountProc{t: t, Dir: t.TempDir(), Data: data, Log: filepath.Join(t.TempDir(), "pagefs.log"), args: args}
	p.Start()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(p.Log)
			lines := strings.Split(string(b), "\n")
			if len(lines) > 60 {
				lines = lines[len(lines)-60:]
			}
			t.Logf("pagefs log (tail):\n%s", strings.Join(lines, "\n"))
		}
	})
	return p
}

// Start starts pagefs (again) and waits for the mount.
func (p *mountProc) Start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logf.Close()
	before := countMounted(p.Log)
	args := append([]string{"mount", "--data", p.Data, "--log-level", "debug"}, p.args...)
	p.cmd = exec.Command(pagefsBin, append(args, p.Dir)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for countMounted(p.Log) == before {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(p.Log)
			p.t.Fatalf("pagefs exited before mounting: %v\n%s", err, b)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatal("pagefs did not mount within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.pid = p.cmd.Process.Pid
	go func() { <-exited }()
}

// Kill sends SIGKILL and waits until the process is gone, leaving a stale
// mount behind as a crash would.
func (p *mountProc) Kill() {
	if p.pid <= 0 {
		return
	}
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	waitGone(p.pid)
	p.cmd, p.pid = nil, 0
}

// Stop sends SIGTERM and waits for a clean exit; it detaches a mount that
// is still there after that.
func (p *mountProc) Stop() {
	if p.pid <= 0 {
		return
	}
	pid := p.pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if !waitGoneFor(pid, 20*time.Second) {
		p.t.Errorf("pagefs did not exit within 20s of SIGTERM")
		_ = syscall.Kill(pid, syscall.SIGKILL)
		waitGone(pid)
	}
	p.cmd, p.pid = nil, 0
	if isMounted(p.Dir) {
		p.t.Errorf("mount %s still present after pagefs exited", p.Dir)
		_ = syscall.Unmount(p.Dir, syscall.MNT_DETACH)
	}
}

func (p *mountProc) Pid() int { return p.pid }

func (p *mountProc) Path(name string) string { return filepath.Join(p.Dir, name) }

func waitGone(pid int) { waitGoneFor(pid, time.Minute) }

func waitGoneFor(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		// A zombie is gone for our purposes: its fds are closed.
		if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// isMounted reports whether a filesystem is mounted at dir.
func isMounted(dir string) bool { return len(mountIDs(dir)) > 0 }

// countMounted counts the "mounted" lines in a pagefs log: a new one means
// the mount is serving. (A killed pagefs leaves a stale mount behind, so
// /proc/self/mountinfo alone cannot tell.)
func countMounted(logPath string) int {
	b, _ := os.ReadFile(logPath)
	return strings.Count(string(b), "msg=mounted ")
}

// mountIDs returns the IDs of the mounts at dir.
func mountIDs(dir string) map[string]bool {
	ids := map[string]bool{}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ids
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == dir {
			ids[fields[0]] = true
		}
	}
	return ids
}

// peakRSS returns a process's peak resident memory in bytes.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
