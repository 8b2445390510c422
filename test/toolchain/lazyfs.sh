#!/usr/bin/env bash
# Builds lazyfs (test/toolchain/lazyfs/: the FUSE filesystem that drops unsynced writes on a
# simulated power cut, for test/faults/power-loss.test.ts) ONCE into the toolchain cache:
#   ${TETHER_CACHE:-$HOME/.cache/tether}/lazyfs-<hash of its source>/lazyfs
#
# Usage:
#   bash test/toolchain/lazyfs.sh               # build when missing; prints `export TETHER_LAZYFS_BIN=...`
#   bash test/toolchain/lazyfs.sh --print-env   # build nothing; print the export (fails if missing)
#
# The cache key is a hash of the source (main.go, go.mod, go.sum): any change builds a new binary.
# Progress goes to stderr. Serialised with the toolchain's flock.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$HERE/lazyfs"
CACHE="${TETHER_CACHE:-$HOME/.cache/tether}"
log() { printf '[lazyfs] %s\n' "$*" >&2; }
die() { printf '[lazyfs] ERROR: %s\n' "$*" >&2; exit 1; }

hash=$(cd "$SRC" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
bin="$CACHE/lazyfs-$hash/lazyfs"
if [[ "${1:-}" == "--print-env" ]]; then
  [[ -x "$bin" ]] || { log "not built at $bin (run: bash test/toolchain/lazyfs.sh)"; exit 1; }
  printf 'export TETHER_LAZYFS_BIN=%q\n' "$bin"
  exit 0
fi
[[ $# -eq 0 ]] || die "unknown argument '$1'"
if [[ ! -x "$bin" ]]; then
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.install.lock"
  flock 9
  if [[ ! -x "$bin" ]]; then
    command -v go >/dev/null 2>&1 || die "'go' not found on PATH (needed to build lazyfs)"
    mkdir -p "$(dirname "$bin")"
    log "building lazyfs ($hash) ..."
    (cd "$SRC" && CGO_ENABLED=0 GOWORK=off GOFLAGS="-buildvcs=false -mod=mod" nice -n 10 go build -trimpath -ldflags="-s -w" -o "$bin.tmp.$$" .) ||
      { rm -f "$bin.tmp.$$"; die "go build failed (see above)"; }
    mv -f "$bin.tmp.$$" "$bin"
    log "built $bin"
  fi
fi
printf 'export TETHER_LAZYFS_BIN=%q\n' "$bin"
