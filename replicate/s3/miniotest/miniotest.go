// Package miniotest starts a real MinIO server on 127.0.0.1 for tests.
//
// # Basics
//
// Start finds the minio binary (built by scripts/deps.sh into
// ~/.cache/pagefs/bin), starts it on a free loopback port with a fresh data
// folder and waits until it answers. NewBucket creates a bucket with a
// unique name; URL returns the backup URL of a prefix in it, with the
// endpoint, region and path-style parameters that pagefs and Litestream
// both read. Credentials are not in the URL: Env returns the AWS_*
// variables a subprocess needs, and Credentials a provider for in-process
// clients.
//
// # Caveats
//
// When CI=true a missing binary fails the test; elsewhere it skips it,
// saying how to get the binary. Kill and Restart stop and start the same
// server (same port and data) so that tests can cut the store off midway.
package miniotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// Region is the region the server's URLs name.
const Region = "us-east-1"

// Server is a MinIO process.
type Server struct {
	Endpoint  string // http://127.0.0.1:port
	AccessKey string
	SecretKey string

	bin  string
	dir  string
	addr string
	log  *os.File

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Binary returns the path of the minio binary: $PAGEFS_MINIO, minio on
// PATH, or the cache folder of scripts/deps.sh.
func Binary() (string, error) {
	if p := os.Getenv("PAGEFS_MINIO"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	dirs := []string{os.Getenv("PAGEFS_TOOLS")}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".cache", "pagefs", "bin"))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, "minio")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("no minio binary: run scripts/deps.sh (builds it into ~/.cache/pagefs/bin, about 6 minutes the first time) or set PAGEFS_MINIO")
}

// Start starts a server for the test and stops it when the test ends. Use
// StartMain from TestMain to share one server between a package's tests.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := StartMain()
	if errors.Is(err, errNoBinary) {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true and MinIO is missing: %v", err)
		}
		tb.Skipf("skipping: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

var errNoBinary = errors.New("minio not installed")

// StartMain starts a server outside a test. The caller must Stop it. A
// missing binary gives an error that Missing recognises.
func StartMain() (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoBinary, err)
	}
	dir, err := os.MkdirTemp("", "pagefs-minio-")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	s := &Server{
		Endpoint: "http://" + addr, AccessKey: "pagefs-test", SecretKey: "pagefs-test-secret",
		bin: bin, dir: dir, addr: addr,
	}
	if s.log, err = os.Create(filepath.Join(dir, "minio.log")); err != nil {
		return nil, err
	}
	if err := s.start(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Missing reports whether StartMain failed because there is no binary.
func Missing(err error) bool { return errors.Is(err, errNoBinary) }

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin, "server", "--quiet", "--address", s.addr, "--console-address", "127.0.0.1:0", filepath.Join(s.dir, "data"))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start minio: %w", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.log.Name())
			return fmt.Errorf("minio did not become ready on %s within 60s: %v\n%s", s.addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill stops the server abruptly, keeping its data for Restart.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Restart starts the server again on the same address and data.
func (s *Server) Restart() error { return s.start() }

// Stop kills the server and removes its data.
func (s *Server) Stop() {
	s.Kill()
	if s.log != nil {
		s.log.Close()
	}
	os.RemoveAll(s.dir)
}

// Credentials returns a provider of the server's keys.
func (s *Server) Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, "")
}

// Env returns the AWS variables a subprocess needs to reach the server.
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey, "AWS_REGION=" + Region}
}

// URL returns the backup URL of prefix in bucket.
func (s *Server) URL(bucket, prefix string) string {
	u := "s3://" + bucket
	if prefix = strings.Trim(prefix, "/"); prefix != "" {
		u += "/" + prefix
	}
	return u + "?endpoint=" + url.QueryEscape(s.Endpoint) + "&region=" + Region + "&forcePathStyle=true"
}

// API returns an SDK client for the server.
func (s *Server) API() *awss3.Client {
	return awss3.New(awss3.Options{
		Region: Region, BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
		Credentials: s.Credentials(),
	})
}

// NewBucket creates a bucket with a unique name that starts with prefix.
func (s *Server) NewBucket(tb testing.TB, prefix string) string {
	tb.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.ToLower(prefix) + "-" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.API().CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		tb.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}
