package fence

import (
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv makes the test binary run as the fence process, so the Client
// tests run a real child without building pagefs.
const childEnv = "PAGEFS_FENCE_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := Serve(os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func startClient(t *testing.T) *Client {
	t.Helper()
	t.Setenv(childEnv, "1")
	c := Start([]string{os.Args[0]}, nil)
	t.Cleanup(func() { c.Close() })
	return c
}

// lockHolder returns the pid that holds a lock on the write-lock byte of
// path, or 0.
func lockHolder(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the fence is another process: this drops none of its locks
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: WriteLockByte, Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk); err != nil {
		t.Fatal(err)
	}
	if lk.Type == unix.F_UNLCK {
		return 0
	}
	return int(lk.Pid)
}

func waitHolder(t *testing.T, path string, ok func(pid int) bool, what string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pid := lockHolder(t, path)
		if ok(pid) {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the lock on %s is held by pid %d", what, path, pid)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestClient_FencesFromAChildProcessAndRestartsIt(t *testing.T) {
	shm := shmFile(t, "app.db-shm")
	c := startClient(t)
	c.Until(time.Now().Add(time.Hour))
	c.Track(shm)
	c.Hold()
	first := waitHolder(t, shm, func(pid int) bool { return pid != 0 }, "hold")
	if first != c.PID() || first == os.Getpid() {
		t.Fatalf("lock held by pid %d; the fence process is %d, the test %d", first, c.PID(), os.Getpid())
	}

	// A fence that dies is started again and told everything.
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := waitHolder(t, shm, func(pid int) bool { return pid != 0 && pid != first }, "restart")
	if second != c.PID() {
		t.Fatalf("lock held by pid %d after the restart; the fence process is %d", second, c.PID())
	}

	c.Until(time.Now().Add(time.Hour)) // a new lease lifts the hold
	waitHolder(t, shm, func(pid int) bool { return pid == 0 }, "new lease")
	c.Until(time.Now().Add(200 * time.Millisecond)) // the lease is not renewed
	waitHolder(t, shm, func(pid int) bool { return pid == second }, "deadline")

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if pid := lockHolder(t, shm); pid != 0 {
		t.Fatalf("pid %d still holds the lock after Close", pid)
	}
	if err := syscall.Kill(second, 0); err == nil {
		t.Fatalf("the fence process %d outlived Close", second)
	}
}
