#!/usr/bin/env bash
# deps.sh installs, idempotently, everything pagefs's tests need on a fresh
# Debian machine with Go: system packages through apt-get (only when one is
# missing) and Go tools into a cache folder ($PAGEFS_TOOLS, default
# ~/.cache/pagefs/bin). It prints the tools folder on its last line.
set -euo pipefail

tools="${PAGEFS_TOOLS:-$HOME/.cache/pagefs/bin}"
mkdir -p "$tools"

need=()
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
# etcd (Debian 3.4) for the lease and failover tests, on 127.0.0.1 only.
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need+=(etcd-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: need root to apt-get install ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

# go_tool NAME MODULE@VERSION installs a Go tool into the cache unless the
# cached binary was built from that exact version.
go_tool() {
  local name=$1 mod=$2 stamp="$tools/.$1.version"
  if [ -x "$tools/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$mod" ]; then
    return 0
  fi
  echo "deps: go install $mod (cached in $tools)" >&2
  GOBIN="$tools" go install "$mod" >&2
  echo "$mod" >"$stamp"
}

go_tool staticcheck honnef.co/go/tools/cmd/staticcheck@v0.8.2
# MinIO (S3 for the backup tests; ~6 minutes to build the first time) and
# Litestream 0.5 (bucket interop tests). Set PAGEFS_SKIP_MINIO=1 or
# PAGEFS_SKIP_LITESTREAM=1 to leave one out.
[ "${PAGEFS_SKIP_MINIO:-}" = 1 ] || go_tool minio github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
[ "${PAGEFS_SKIP_LITESTREAM:-}" = 1 ] || go_tool litestream github.com/benbjohnson/litestream/cmd/litestream@v0.5.18

echo "$tools"
