#!/usr/bin/env bash
# test.sh runs the whole pagefs test suite: it installs what the tests need
# (scripts/deps.sh), checks formatting, vet and staticcheck, runs every
# package's tests including the FUSE integration tests, and runs each fuzzer
# for a bounded time. Run it as root from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=$(scripts/deps.sh | tail -n 1)
export PATH="$tools:$PATH"

echo "== gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then echo "gofmt would change:"; echo "$bad"; exit 1; fi

echo "== go vet"
go vet ./...

echo "== staticcheck"
staticcheck ./...

echo "== go test"
go test -count=1 -timeout 30m ./...

echo "== fuzz (${PAGEFS_FUZZTIME:-20s} each)"
scripts/fuzz.sh "${PAGEFS_FUZZTIME:-20s}"
