#!/usr/bin/env bash
# Builds the Go load generator (bench/loadgen-go/) ONCE into the bench cache:
#   ${TETHER_CACHE:-$HOME/.cache/tether}/bench/loadgen-go-<hash of its source>/loadgen-go
# and prints the binary's path on stdout (progress on stderr). The key is a hash of go.mod and
# the *.go files: any change builds a new binary. Standard library only (no go.sum). Serialised
# with flock; the build runs under nice (it shares the cores with whatever is measured).
#   bash bench/loadgen-go/build.sh
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${TETHER_CACHE:-$HOME/.cache/tether}/bench"
die() { printf '[loadgen-go] ERROR: %s\n' "$*" >&2; exit 1; }
hash=$(cd "$SRC" && cat go.mod ./*.go | sha256sum | cut -c1-16)
bin="$CACHE/loadgen-go-$hash/loadgen-go"
if [[ ! -x "$bin" ]]; then
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.loadgen-go.lock"
  flock 9
  if [[ ! -x "$bin" ]]; then
    command -v go >/dev/null 2>&1 || die "'go' not found on PATH (the test toolchain needs it too: test/toolchain/install.sh)"
    mkdir -p "$(dirname "$bin")"
    printf '[loadgen-go] building %s with %s ...\n' "$hash" "$(go env GOVERSION)" >&2
    (cd "$SRC" && CGO_ENABLED=0 GOWORK=off GOFLAGS="-buildvcs=false -mod=mod" nice -n 10 go build -trimpath -ldflags="-s -w" -o "$bin.tmp.$$" .) ||
      { rm -f "$bin.tmp.$$"; die "go build failed (see above)"; }
    mv -f "$bin.tmp.$$" "$bin"
  fi
fi
printf '%s\n' "$bin"
