#!/usr/bin/env bash
# fuzz.sh runs every Fuzz* target in the module for the given time each
# (default 20s). A finding is written to the package's testdata/fuzz by go
# test and fails the run. Go 1.26 can end a timed run with "context deadline
# exceeded" and no finding (golang/go#75804): such a run is retried once.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-20s}
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for fn in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    for try in 1 2; do
      echo "fuzz $pkg $fn ($t)"
      before=$( (ls "$dir/testdata/fuzz/$fn" 2>/dev/null || true) | wc -l)
      if out=$(go test -run '^$' -fuzz "^$fn\$" -fuzztime "$t" "$pkg" 2>&1); then
        echo "$out" | tail -n 2
        break
      fi
      after=$( (ls "$dir/testdata/fuzz/$fn" 2>/dev/null || true) | wc -l)
      echo "$out" | tail -n 20
      if [ "$after" -gt "$before" ] || [ "$try" = 2 ] || ! grep -q "context deadline exceeded" <<<"$out"; then
        echo "fuzz $pkg $fn: FAILED"
        exit 1
      fi
      echo "fuzz $pkg $fn: deadline error without a finding; retrying once"
    done
  done
done
