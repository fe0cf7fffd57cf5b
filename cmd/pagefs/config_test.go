package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pagefs.yml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfig_FileEnvFlagsPrecedence(t *testing.T) {
	p := writeConfig(t, "data: /from/file\nhttp-addr: 127.0.0.1:1\nlog:\n  level: warn\ncapture:\n  poll-interval: 5ms\nretention:\n  duration: 1h\n  count: 7\n")
	env := map[string]string{"PAGEFS_HTTP_ADDR": "127.0.0.1:2", "PAGEFS_RETENTION": "2h"}
	cfg, err := loadConfigFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(&cfg, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if cfg.Data != "/from/file" || cfg.HTTPAddr != "127.0.0.1:2" || cfg.Log.Level != "warn" ||
		time.Duration(cfg.Capture.PollInterval) != 5*time.Millisecond ||
		time.Duration(cfg.Retention.Duration) != 2*time.Hour || cfg.Retention.Count != 7 {
		t.Fatalf("merged config: %+v", cfg)
	}
}

func TestConfig_Errors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"UnknownKey", "data: /x\nbackups: nope\n", "line 2: field backups not found"},
		{"WrongType", "retention:\n  count: many\n", "line 2"},
		{"BadDuration", "capture:\n  poll-interval: soon\n", `line 2: "soon" is not a duration`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, tc.yaml)
			_, err := loadConfigFile(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("got %v, want an error naming %s and %q", err, p, tc.want)
			}
		})
	}
	t.Run("MissingFile", func(t *testing.T) {
		_, err := loadConfigFile("/nonexistent/pagefs.yml")
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/pagefs.yml") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("EmptyFileMeansDefaults", func(t *testing.T) {
		cfg, err := loadConfigFile(writeConfig(t, ""))
		if err != nil || cfg.Data != "" {
			t.Fatalf("got %+v, %v", cfg, err)
		}
	})
	t.Run("BadEnv", func(t *testing.T) {
		var cfg Config
		err := applyEnv(&cfg, func(k string) string {
			if k == "PAGEFS_RETENTION_COUNT" {
				return "-3"
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), "PAGEFS_RETENTION_COUNT") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestConfig_DefaultDataDir(t *testing.T) {
	cfg := Config{}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Data != defaultDataDir() || cfg.Data == "" {
		t.Fatalf("default data dir %q", cfg.Data)
	}
}

// runApp runs the CLI in-process and returns its exit error and output.
func runApp(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.Run(append([]string{"pagefs"}, args...))
	return out.String(), err
}

func TestMount_RefusesBadInput(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mount checks need root")
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"NoMountpoint", []string{"mount"}, "no MOUNTPOINT"},
		{"MissingMountpoint", []string{"mount", "--data", dir, filepath.Join(dir, "nope")}, "does not exist (create it with: mkdir -p"},
		{"BadConfig", []string{"mount", "--config", writeConfig(t, "nope: 1\n"), dir}, "field nope not found"},
		{"BadLogLevel", []string{"mount", "--log-level", "loud", dir}, `log level "loud"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runApp(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestHelp_EveryCommandTeaches(t *testing.T) {
	for _, cmd := range newApp().Commands {
		out, err := runApp(t, cmd.Name, "--help")
		if err != nil {
			t.Fatalf("%s --help: %v", cmd.Name, err)
		}
		if !strings.Contains(out, "USAGE") {
			t.Fatalf("%s --help:\n%s", cmd.Name, out)
		}
	}
	out, _ := runApp(t, "mount", "--help")
	for _, want := range []string{"--data", "--config", "--http-addr", "--retention", "Example:"} {
		if !strings.Contains(out, want) {
			t.Fatalf("mount --help lacks %s", want)
		}
	}
}
