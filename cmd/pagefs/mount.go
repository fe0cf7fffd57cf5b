package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pagefs/pagefs/fuse"
	"github.com/pagefs/pagefs/mount"
)

func mountCommand() *cli.Command {
	return &cli.Command{
		Name:      "mount",
		Usage:     "mount pagefs and capture every SQLite transaction under it",
		ArgsUsage: "MOUNTPOINT",
		Description: `Mounts pagefs at MOUNTPOINT in the foreground. Point your application's
database path into the mount (MOUNTPOINT/app.db) and use SQLite as usual:
every committed transaction is captured into an LTX file under
DATA/<db>/ltx/0. The real files live in DATA/.pagefs/files.

Supported journal modes: DELETE, TRUNCATE, PERSIST and WAL. journal_mode
OFF and MEMORY cannot be captured: writes in those modes fail with a disk
I/O error and a log line.

Settings come from --config (YAML), then PAGEFS_* environment variables,
then flags; each flag below names its config key and variable.

SIGINT or SIGTERM unmounts cleanly. A stale mount left by a crash is
cleaned up on the next start.

Example:
   mkdir -p /litefs && pagefs mount /litefs
   sqlite3 /litefs/app.db 'PRAGMA journal_mode=WAL; CREATE TABLE t(x);'`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "YAML config `FILE`"},
			&cli.StringFlag{Name: "data", Usage: "data `DIR` (config data, PAGEFS_DATA)", DefaultText: "/var/lib/pagefs as root, ~/.local/share/pagefs otherwise"},
			&cli.StringFlag{Name: "http-addr", Usage: "serve status and Prometheus metrics on `ADDR`, e.g. 127.0.0.1:9090 (config http-addr, PAGEFS_HTTP_ADDR)", DefaultText: "off"},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error (config log.level, PAGEFS_LOG_LEVEL)", DefaultText: "info"},
			&cli.StringFlag{Name: "log-format", Usage: "text or json (config log.format, PAGEFS_LOG_FORMAT)", DefaultText: "text"},
			&cli.DurationFlag{Name: "poll-interval", Usage: "how often a busy WAL database is checked for commits (config capture.poll-interval, PAGEFS_POLL_INTERVAL)", DefaultText: "1ms"},
			&cli.DurationFlag{Name: "idle-poll-interval", Usage: "slowest check of a quiet WAL database (config capture.idle-poll-interval, PAGEFS_IDLE_POLL_INTERVAL)", DefaultText: "25ms; 2ms with --http-addr, for replicas"},
			&cli.DurationFlag{Name: "retention", Usage: "delete local LTX files older than this (config retention.duration, PAGEFS_RETENTION)", DefaultText: "0, keep all"},
			&cli.IntFlag{Name: "retention-count", Usage: "always keep this many newest local LTX files per database (config retention.count, PAGEFS_RETENTION_COUNT)", DefaultText: "1"},
			&cli.StringFlag{Name: "lease", Usage: "static or etcd: how the primary is chosen (config lease, PAGEFS_LEASE)", DefaultText: "static"},
			&cli.StringFlag{Name: "primary-url", Usage: "static lease: replicate the primary at `URL` read-only; without it this node is the primary (config primary-url, PAGEFS_PRIMARY_URL)"},
			&cli.StringFlag{Name: "advertise-url", Usage: "`URL` other nodes reach this node's --http-addr at (config advertise-url, PAGEFS_ADVERTISE_URL)", DefaultText: "http://HTTP-ADDR"},
			&cli.StringFlag{Name: "etcd-endpoints", Usage: "etcd lease: comma-separated etcd client URLs (config etcd-endpoints, PAGEFS_ETCD_ENDPOINTS)"},
			&cli.StringFlag{Name: "etcd-key", Usage: "etcd lease: the key nodes of one cluster compete for (config etcd-key, PAGEFS_ETCD_KEY)", DefaultText: "/pagefs/primary"},
			&cli.DurationFlag{Name: "lease-ttl", Usage: "etcd lease: TTL; a dead primary is replaced within it (config lease-ttl, PAGEFS_LEASE_TTL)", DefaultText: "10s"},
			&cli.StringSliceFlag{Name: "backup", Usage: "back up continuously to `URL` (file:///dir or s3://bucket/prefix?endpoint=&region=&forcePathStyle=true); repeat for several; an empty data dir is restored from it first (config backup, PAGEFS_BACKUP)", DefaultText: "none"},
			&cli.BoolFlag{Name: "fuse-debug", Usage: "log every FUSE request (very verbose)"},
			&cli.StringFlag{Name: "cpu-profile", Usage: "write a Go CPU profile of the mount's whole run to `FILE`, for performance work"},
		},
		Action: runMount,
	}
}

// mountConfig merges the config file, the environment and the flags.
func mountConfig(c *cli.Context) (Config, error) {
	var cfg Config
	if p := c.String("config"); p != "" {
		var err error
		if cfg, err = loadConfigFile(p); err != nil {
			return cfg, err
		}
	}
	if err := applyEnv(&cfg, os.Getenv); err != nil {
		return cfg, err
	}
	if c.IsSet("data") {
		cfg.Data = c.String("data")
	}
	if c.IsSet("http-addr") {
		cfg.HTTPAddr = c.String("http-addr")
	}
	if c.IsSet("log-level") {
		cfg.Log.Level = c.String("log-level")
	}
	if c.IsSet("log-format") {
		cfg.Log.Format = c.String("log-format")
	}
	if c.IsSet("poll-interval") {
		cfg.Capture.PollInterval = Duration(c.Duration("poll-interval"))
	}
	if c.IsSet("idle-poll-interval") {
		cfg.Capture.IdlePollInterval = Duration(c.Duration("idle-poll-interval"))
	}
	if c.IsSet("retention") {
		cfg.Retention.Duration = Duration(c.Duration("retention"))
	}
	if c.IsSet("retention-count") {
		cfg.Retention.Count = c.Int("retention-count")
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"lease", &cfg.Lease}, {"primary-url", &cfg.PrimaryURL}, {"advertise-url", &cfg.AdvertiseURL}, {"etcd-key", &cfg.EtcdKey}} {
		if c.IsSet(f.name) {
			*f.dst = c.String(f.name)
		}
	}
	if c.IsSet("etcd-endpoints") {
		cfg.EtcdEndpoints = splitList(c.String("etcd-endpoints"))
	}
	if c.IsSet("lease-ttl") {
		cfg.LeaseTTL = Duration(c.Duration("lease-ttl"))
	}
	if c.IsSet("backup") {
		cfg.Backup = c.StringSlice("backup")
	}
	cfg.fuseDebug = c.Bool("fuse-debug")
	if c.Args().Len() > 0 {
		cfg.Mountpoint = c.Args().First()
	}
	if c.Args().Len() > 1 {
		return cfg, fmt.Errorf("mount takes one MOUNTPOINT, got %q", c.Args().Slice())
	}
	if cfg.Mountpoint == "" {
		return cfg, errors.New("no MOUNTPOINT given (see pagefs mount --help)")
	}
	return cfg, cfg.validate()
}

func newLogger(cfg LogConfig, w *os.File) *slog.Logger {
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runMount(c *cli.Context) error {
	cfg, err := mountConfig(c)
	if err != nil {
		return cli.Exit(fmt.Sprintf("pagefs mount: %v", err), 2)
	}
	log := newLogger(cfg.Log, os.Stderr)
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if p := c.String("cpu-profile"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			return cli.Exit(fmt.Sprintf("pagefs mount: cpu profile: %v", err), 2)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return cli.Exit(fmt.Sprintf("pagefs mount: cpu profile: %v", err), 2)
		}
		defer pprof.StopCPUProfile()
	}
	if err := serve(ctx, cfg, log); err != nil {
		return cli.Exit(fmt.Sprintf("pagefs mount: %v", err), 1)
	}
	return nil
}

// serve mounts, serves until ctx is done, and unmounts.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	mp, err := filepath.Abs(cfg.Mountpoint)
	if err != nil {
		return err
	}
	if err := checkMountpoint(mp, log); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	backup, err := prepareBackup(ctx, cfg, log)
	if err != nil {
		return err
	}
	hooks := &commitHooks{}
	if fn := backup.onCommit(); fn != nil {
		hooks.add(fn)
	}
	fc := startFence(cfg.ReplicationConfig, log)
	if fc != nil {
		// Last of all: while the application still holds files on the mount,
		// the fence keeps a demoted node's old connections from committing.
		defer fc.Close()
	}
	store, err := openStore(mount.Config{
		OnWALWriters:     walWritersHook(fc, mp),
		RetentionFloor:   backup.retentionFloor(),
		OnCommit:         hooks.call,
		DataDir:          cfg.Data,
		Logger:           log,
		PollInterval:     time.Duration(cfg.Capture.PollInterval),
		IdlePollInterval: time.Duration(cfg.Capture.IdlePollInterval),
		Retention:        time.Duration(cfg.Retention.Duration),
		RetentionCount:   cfg.Retention.Count,
	})
	if err != nil {
		return err
	}
	repl, err := newReplication(cfg.ReplicationConfig, store, mp, log, hooks, fc)
	if err != nil {
		store.Close()
		return err
	}
	srv, err := fuse.Mount(mp, store, fuse.Options{Logger: log, Debug: cfg.fuseDebug})
	if err != nil {
		store.Close()
		return err
	}
	log.Info("mounted", "mountpoint", mp, "data", store.DataDir())
	var httpSrv *statusServer
	if cfg.HTTPAddr != "" {
		if httpSrv, err = startStatusServer(cfg.HTTPAddr, store, log, repl.routes(), repl.decorate); err != nil {
			_ = unmount(srv, mp, log)
			store.Close()
			return err
		}
	}
	repl.start(ctx)
	backup.start(store)
	<-ctx.Done()
	log.Info("unmounting", "mountpoint", mp)
	repl.stop()
	if httpSrv != nil {
		httpSrv.close()
	}
	uerr := unmount(srv, mp, log)
	if err := store.Close(); err != nil {
		repl.release()
		backup.close()
		return errors.Join(uerr, err)
	}
	repl.release()
	backup.close()
	if uerr == nil {
		log.Info("unmounted", "mountpoint", mp)
	}
	return uerr
}

// openStore opens the data directory. A pagefs that crashed with files open
// on its own mount (a replica's connections) releases the directory's lock
// only once checkMountpoint has aborted its FUSE connection and its last
// thread has exited, so a held lock is retried for a few seconds.
func openStore(cfg mount.Config) (*mount.Store, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		store, err := mount.Open(cfg)
		if !errors.Is(err, mount.ErrDataDirLocked) || time.Now().After(deadline) {
			return store, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unmount unmounts, retrying while files are open for up to two seconds,
// then detaches the mount so the process can exit; open files then fail
// with ENOTCONN. Commits made after the store's final capture are still in
// the backing WAL, which the next start captures.
func unmount(srv *fuse.Server, mp string, log *slog.Logger) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := srv.Unmount()
		if err == nil {
			return nil
		}
		if _, ok := mountedAt(mp); !ok {
			log.Warn("the mount was removed by someone else", "mountpoint", mp)
			srv.Wait()
			return nil
		}
		if time.Now().After(deadline) {
			log.Warn("files still open under the mount; detaching it", "mountpoint", mp, "err", err)
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s: %w", mp, err)
			}
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkMountpoint refuses a missing or busy mountpoint and cleans up a
// stale pagefs mount left by a crash.
func checkMountpoint(mp string, log *slog.Logger) error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("no /dev/fuse: load the fuse kernel module (modprobe fuse) or give the container the device")
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			return errors.New("not root and no fusermount3 on PATH: run as root or install fuse3")
		}
	}
	// Look at the mount table before touching the mountpoint: a stale
	// pagefs mount may not answer at all.
	if m, ok := mountedAt(mp); ok {
		if m.fstype != "fuse.pagefs" {
			return fmt.Errorf("mountpoint %s is busy: a %s filesystem is already mounted there", mp, m.fstype)
		}
		if aliveWithin(mp, 2*time.Second) {
			return fmt.Errorf("mountpoint %s is busy: another pagefs is serving it", mp)
		}
		log.Warn("cleaning up a stale mount left by a crash", "mountpoint", mp)
		// A pagefs killed while its own SQLite connections (a replica's)
		// were open on its mount hangs in exit, flushing them to itself,
		// and its mount never fails: aborting the FUSE connection frees
		// both.
		abortFUSE(m.dev)
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("mountpoint %s: stale mount that cannot be unmounted: %w", mp, err)
		}
	}
	_, err := os.Stat(mp)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mountpoint %s does not exist (create it with: mkdir -p %s)", mp, mp)
	} else if err != nil {
		return fmt.Errorf("mountpoint %s: %w", mp, err)
	}
	return nil
}

// aliveWithin reports whether the filesystem at mp answers within d.
func aliveWithin(mp string, d time.Duration) bool {
	done := make(chan bool, 1)
	go func() { done <- alive(mp) }() // blocks until the connection is aborted, if the daemon is stuck
	select {
	case ok := <-done:
		return ok
	case <-time.After(d):
		return false
	}
}

// abortFUSE aborts the FUSE connection of the mount whose device is dev
// ("0:39"): every request waiting on it fails at once.
func abortFUSE(dev string) {
	_, minor, ok := strings.Cut(dev, ":")
	if !ok {
		return
	}
	const dir = "/sys/fs/fuse/connections"
	if _, err := os.Stat(dir + "/" + minor); err != nil {
		// The fusectl filesystem is not always mounted.
		_ = syscall.Mount("fusectl", dir, "fusectl", 0, "")
	}
	_ = os.WriteFile(dir+"/"+minor+"/abort", []byte("1"), 0o200)
}

func isNotConnected(err error) bool {
	return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED)
}

// alive reports whether the filesystem at mp answers: a crashed pagefs
// leaves a mount whose every uncached operation fails with ENOTCONN.
func alive(mp string) bool {
	f, err := os.Open(mp)
	if err != nil {
		return !isNotConnected(err)
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	return !isNotConnected(err)
}

// mountInfo is what /proc/self/mountinfo says about a mount.
type mountInfo struct {
	fstype string
	dev    string // major:minor
}

// mountedAt reports whether something is mounted at mp, and what.
func mountedAt(mp string) (mountInfo, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return mountInfo{}, false
	}
	defer f.Close()
	var found mountInfo
	ok := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || unescapeMount(fields[4]) != mp {
			continue
		}
		found, ok = mountInfo{fstype: "unknown", dev: fields[2]}, true // the last mount at mp is the visible one
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) {
				found.fstype = fields[i+1]
				break
			}
		}
	}
	return found, ok
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
