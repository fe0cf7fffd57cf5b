package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is everything `pagefs mount` can be told, from a YAML file, from
// PAGEFS_* environment variables (which override the file) and from flags
// (which override both). The zero Config plus defaults() runs a standalone
// primary with no backup.
type Config struct {
	Data       string        `yaml:"data"`       // data directory; default defaultDataDir()
	Mountpoint string        `yaml:"mountpoint"` // where to mount; the command's argument wins
	HTTPAddr   string        `yaml:"http-addr"`  // status and metrics; empty disables
	Log        LogConfig     `yaml:"log"`        //
	Capture    CaptureConfig `yaml:"capture"`    //
	Retention  RetentionConf `yaml:"retention"`  // local LTX files

	ReplicationConfig `yaml:",inline"` // lease, primary-url, advertise-url, etcd-endpoints, etcd-key, lease-ttl
	BackupConfig      `yaml:",inline"` // backup, backup-options

	fuseDebug bool // --fuse-debug only
}

// LogConfig selects the log level (debug, info, warn, error) and format
// (text or json).
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// CaptureConfig tunes how fast WAL commits are noticed.
type CaptureConfig struct {
	PollInterval     Duration `yaml:"poll-interval"`      // busy polling of the -shm header; default 1ms
	IdlePollInterval Duration `yaml:"idle-poll-interval"` // slowest polling when quiet; default 25ms
}

// RetentionConf says how long local LTX files are kept.
type RetentionConf struct {
	Duration Duration `yaml:"duration"` // 0 keeps every file
	Count    int      `yaml:"count"`    // always keep this many newest files; default 1
}

// Duration is a time.Duration written as "250ms", "10s", "24h".
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. 500ms, 10s, 24h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// defaultDataDir is /var/lib/pagefs for root and ~/.local/share/pagefs (or
// $XDG_DATA_HOME/pagefs) for anyone else.
func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/pagefs"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "pagefs")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		if u, uerr := user.Current(); uerr == nil {
			home = u.HomeDir
		}
	}
	return filepath.Join(home, ".local", "share", "pagefs")
}

// loadConfigFile reads a YAML config. Unknown keys and wrong types are
// errors that name the file and line.
func loadConfigFile(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && err != io.EOF { // EOF: an empty file means all defaults
		return c, fmt.Errorf("config %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return c, nil
}

// envPrefix starts every environment variable pagefs reads.
const envPrefix = "PAGEFS_"

// applyEnv overrides c with PAGEFS_* variables: PAGEFS_DATA,
// PAGEFS_HTTP_ADDR, PAGEFS_LOG_LEVEL, PAGEFS_LOG_FORMAT,
// PAGEFS_POLL_INTERVAL, PAGEFS_IDLE_POLL_INTERVAL, PAGEFS_RETENTION,
// PAGEFS_RETENTION_COUNT, PAGEFS_LEASE, PAGEFS_PRIMARY_URL,
// PAGEFS_ADVERTISE_URL, PAGEFS_ETCD_ENDPOINTS, PAGEFS_ETCD_KEY and
// PAGEFS_LEASE_TTL. Lists are comma-separated.
func applyEnv(c *Config, getenv func(string) string) error {
	str := func(name string, dst *string) {
		if v := getenv(envPrefix + name); v != "" {
			*dst = v
		}
	}
	dur := func(name string, dst *Duration) error {
		if v := getenv(envPrefix + name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%s%s=%q is not a duration (use e.g. 500ms, 10s, 24h)", envPrefix, name, v)
			}
			*dst = Duration(d)
		}
		return nil
	}
	str("DATA", &c.Data)
	str("HTTP_ADDR", &c.HTTPAddr)
	str("LOG_LEVEL", &c.Log.Level)
	str("LOG_FORMAT", &c.Log.Format)
	if err := dur("POLL_INTERVAL", &c.Capture.PollInterval); err != nil {
		return err
	}
	if err := dur("IDLE_POLL_INTERVAL", &c.Capture.IdlePollInterval); err != nil {
		return err
	}
	if err := dur("RETENTION", &c.Retention.Duration); err != nil {
		return err
	}
	str("LEASE", &c.Lease)
	str("PRIMARY_URL", &c.PrimaryURL)
	str("ADVERTISE_URL", &c.AdvertiseURL)
	str("ETCD_KEY", &c.EtcdKey)
	if v := getenv(envPrefix + "ETCD_ENDPOINTS"); v != "" {
		c.EtcdEndpoints = splitList(v)
	}
	if err := dur("LEASE_TTL", &c.LeaseTTL); err != nil {
		return err
	}
	if err := applyBackupEnv(&c.BackupConfig, getenv); err != nil {
		return err
	}
	if v := getenv(envPrefix + "RETENTION_COUNT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%sRETENTION_COUNT=%q is not a count", envPrefix, v)
		}
		c.Retention.Count = n
	}
	return nil
}

// validate fills defaults and checks values that do not depend on the
// machine.
func (c *Config) validate() error {
	if c.Data == "" {
		c.Data = defaultDataDir()
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log level %q: use debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		return fmt.Errorf("log format %q: use text or json", c.Log.Format)
	}
	if c.Retention.Count < 0 {
		return fmt.Errorf("retention count %d is negative", c.Retention.Count)
	}
	if c.HTTPAddr != "" && c.Capture.IdlePollInterval == 0 {
		// Replicas may stream from this node: commits after a quiet spell
		// should reach them in milliseconds, not after a 25ms poll.
		c.Capture.IdlePollInterval = Duration(replicationIdlePoll)
	}
	return c.ReplicationConfig.validate(c.HTTPAddr)
}
