#!/usr/bin/env bash
# fuzz.sh runs every Fuzz* target in the module for the given time each
# (default 20s). New findings are written to testdata/fuzz by go test.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-20s}
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for fn in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz $pkg $fn ($t)"
    go test -run '^$' -fuzz "^$fn\$" -fuzztime "$t" "$pkg"
  done
done
