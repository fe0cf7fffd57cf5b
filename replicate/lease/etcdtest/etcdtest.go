// Package etcdtest starts a real etcd server on 127.0.0.1 for tests.
//
// # Basics
//
// Start finds the etcd binary (Debian's etcd-server package, installed by
// scripts/deps.sh), starts a one-member cluster on two free loopback ports
// with a fresh data folder, waits until it answers and stops it when the
// test ends. Endpoint is its client URL.
//
// # Caveats
//
// When CI=true a missing binary fails the test; elsewhere it skips it,
// saying how to get the binary. The server listens on 127.0.0.1 only.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is an etcd process.
type Server struct {
	Endpoint string // http://127.0.0.1:port
	cmd      *exec.Cmd
	log      string
}

// Binary returns the path of the etcd binary: $PAGEFS_ETCD, etcd on PATH,
// or /usr/bin/etcd.
func Binary() (string, error) {
	if p := os.Getenv("PAGEFS_ETCD"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd", nil
	}
	return "", fmt.Errorf("no etcd binary: install Debian's etcd-server (scripts/deps.sh does) or set PAGEFS_ETCD")
}

// Start starts etcd and stops it when the test ends. It skips the test if
// etcd is not installed, or fails it when CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: etcd is required)", err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	client, peer := freePort(t), freePort(t)
	s := &Server{Endpoint: "http://" + client, log: filepath.Join(dir, "etcd.log")}
	logf, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	s.cmd = exec.Command(bin,
		"--name", "test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", "http://"+client,
		"--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer,
		"--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "test=http://"+peer,
		"--initial-cluster-state", "new",
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
	)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH=")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s.healthy() {
			return s
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(s.log)
			t.Fatalf("etcd exited at start:\n%s", tail(string(b), 30))
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(s.log)
			t.Fatalf("etcd did not answer within 30s:\n%s", tail(string(b), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Signal sends sig to the etcd process: SIGSTOP cuts every node off from
// it, as a partition does, until SIGCONT.
func (s *Server) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal etcd: %v", err)
	}
}

func (s *Server) healthy() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.Endpoint+"/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
