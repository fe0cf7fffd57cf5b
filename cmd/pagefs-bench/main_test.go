package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// TestQuickRound runs the whole benchmark once with small counts and checks
// that every mounted database's LTX chain replayed to the database. It
// makes no timing assertion.
func TestQuickRound(t *testing.T) {
	if reason := fuseUnavailable(); reason != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs FUSE: %s", reason)
		}
		t.Skip(reason)
	}
	var out bytes.Buffer
	sum, err := run(context.Background(), []string{"-quick", "-rounds", "1", "-dir", t.TempDir()}, &out, &out)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if want := len(workloads(quickSizes())); len(sum.checks) != want {
		t.Errorf("%d chains verified, want %d", len(sum.checks), want)
	}
	if !sum.passed() {
		t.Errorf("benchmark did not pass: %d failure(s), chains: %+v", len(sum.failures), sum.checks)
	}
	if !strings.Contains(out.String(), "PASS wal-write-normal round 1") {
		t.Errorf("report lacks the wal-write-normal verdict")
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-rounds", "2", "-only", "wal-read, bulk-load", "-quick"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := selectWorkloads(o)
	if err != nil {
		t.Fatal(err)
	}
	if o.rounds != 2 || len(ws) != 2 || ws[0].name != "wal-read" || ws[1].name != "bulk-load" {
		t.Errorf("got rounds %d, workloads %v", o.rounds, ws)
	}
	if _, err := selectWorkloads(options{only: []string{"nope"}}); err == nil {
		t.Error("unknown workload accepted")
	}
}
