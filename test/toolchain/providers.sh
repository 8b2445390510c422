#!/usr/bin/env bash
# Builds the pinned OpenTofu providers (hashicorp/random, hashicorp/kubernetes) from the Go module
# proxy ONCE into a filesystem mirror in the toolchain cache, for the tests that run real modules:
#   ${TETHER_CACHE:-$HOME/.cache/tether}/tofu-providers/mirror/<host>/hashicorp/<name>/<version>/linux_amd64/
#     terraform-provider-<name>_v<version>
# for <host> = registry.opentofu.org (what `hashicorp/<name>` means to tofu) and registry.terraform.io
# (modules that spell that host out). This is tofu's "unpacked" filesystem_mirror layout.
#
# Usage:
#   bash test/toolchain/providers.sh                  # build whatever is missing
#   bash test/toolchain/providers.sh --print-env      # build nothing; print the export (fails if missing)
#   eval "$(bash test/toolchain/providers.sh)"        # build + export TETHER_TOFU_PROVIDER_MIRROR
#
# Progress goes to stderr; stdout carries only the `export TETHER_TOFU_PROVIDER_MIRROR=...` line.
# Versions are pinned in versions.env; each provider is built with `go build` from a wrapper module
# in test/toolchain/providers/<name>/ whose go.mod/go.sum pin the full dependency graph.
# Idempotent (a stamp per provider), serialised with the toolchain's flock.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE="${TETHER_CACHE:-$HOME/.cache/tether}"
ROOT="$CACHE/tofu-providers"
MIRROR="$ROOT/mirror"
HOSTS=(registry.opentofu.org registry.terraform.io)
PLATFORM=linux_amd64
ALL=(random kubernetes)
# Bump to force a rebuild when the recipe below changes in a way the stamp can't see.
RECIPE_REVISION=1

log() { printf '[providers] %s\n' "$*" >&2; }
die() { printf '[providers] ERROR: %s\n' "$*" >&2; exit 1; }

# Sets P_VER (registry version, no v), P_MOD (Go module), P_GOVER (its version in go.mod), P_PKG.
recipe() {
  case "$1" in
    random)
      P_VER="$TOFU_PROVIDER_RANDOM_VERSION" P_MOD=github.com/terraform-providers/terraform-provider-random
      P_GOVER="$TOFU_PROVIDER_RANDOM_GO_VERSION" P_PKG="$P_MOD"
      ;;
    kubernetes)
      P_VER="$TOFU_PROVIDER_KUBERNETES_VERSION" P_MOD=github.com/hashicorp/terraform-provider-kubernetes
      P_GOVER="$TOFU_PROVIDER_KUBERNETES_GO_VERSION" P_PKG="$P_MOD"
      ;;
    *) die "unknown provider '$1' (known: ${ALL[*]})" ;;
  esac
}

bin_in() { # host provider -> path of the executable in the mirror
  recipe "$2"
  printf '%s/%s/hashicorp/%s/%s/%s/terraform-provider-%s_v%s' "$MIRROR" "$1" "$2" "$P_VER" "$PLATFORM" "$2" "$P_VER"
}

stamp_of() {
  recipe "$1"
  {
    printf 'revision=%s\nprovider=%s\nversion=%s\npkg=%s\n' "$RECIPE_REVISION" "$1" "$P_VER" "$P_PKG"
    find "$HERE/providers/$1" -type f -name 'go.*' -print0 | sort -z | xargs -0 cat
  } | sha256sum | cut -d' ' -f1
}

check_pin() {
  recipe "$1"
  local gomod="$HERE/providers/$1/go.mod"
  [[ -f "$gomod" && -f "$HERE/providers/$1/go.sum" ]] || die "$1: missing providers/$1/go.mod or go.sum"
  grep -Eq "^[[:space:]]*(require[[:space:]]+)?${P_MOD//./\\.}[[:space:]]+${P_GOVER//./\\.}([[:space:]]|$)" "$gomod" ||
    die "$1: providers/$1/go.mod does not require $P_MOD $P_GOVER (versions.env and go.mod disagree)"
}

installed() { # provider -> 0 when every host's copy is there and the stamp matches
  local h
  for h in "${HOSTS[@]}"; do [[ -x "$(bin_in "$h" "$1")" ]] || return 1; done
  [[ -f "$ROOT/$1-$P_VER.stamp" && "$(cat "$ROOT/$1-$P_VER.stamp")" == "$(stamp_of "$1")" ]]
}

build_one() {
  local p="$1"
  check_pin "$p"
  if installed "$p"; then
    log "$p $P_VER: cached ($MIRROR)"
    return 0
  fi
  command -v go >/dev/null 2>&1 || die "$p: 'go' not found on PATH (needed to build the providers)"
  recipe "$p"
  mkdir -p "$ROOT"
  local tmp="$ROOT/.$p.tmp.$$"
  log "$p $P_VER: building $P_PKG@$P_GOVER (go $(go env GOVERSION)) ..."
  local start=$SECONDS
  # nice: the kubernetes provider is large and the machines are small. GOCACHE/GOMODCACHE stay at
  # their defaults so a rebuild after a recipe change is fast.
  if ! (
    cd "$HERE/providers/$p" &&
      CGO_ENABLED=0 GOWORK=off GOFLAGS="-buildvcs=false -mod=mod" \
        nice -n 10 go build -trimpath -ldflags="-s -w" -o "$tmp" "$P_PKG"
  ); then
    rm -f "$tmp"
    die "$p: go build failed (see above)"
  fi
  local h bin
  for h in "${HOSTS[@]}"; do
    bin="$(bin_in "$h" "$p")"
    rm -rf "$(dirname "$bin")"
    mkdir -p "$(dirname "$bin")"
    cp "$tmp" "$bin.tmp" && mv -f "$bin.tmp" "$bin"
  done
  rm -f "$tmp"
  stamp_of "$p" >"$ROOT/$p-$P_VER.stamp"
  log "$p $P_VER: built in $((SECONDS - start))s -> $MIRROR ($(du -h "$(bin_in "${HOSTS[0]}" "$p")" | cut -f1))"
}

print_only=0
for arg in "$@"; do
  case "$arg" in
    --print-env) print_only=1 ;;
    -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown argument '$arg'" ;;
  esac
done

if ((print_only)); then
  for p in "${ALL[@]}"; do
    for h in "${HOSTS[@]}"; do
      b="$(bin_in "$h" "$p")"
      [[ -x "$b" ]] || { log "$p: not installed at $b (run: bash test/toolchain/providers.sh)"; exit 1; }
    done
  done
  printf 'export TETHER_TOFU_PROVIDER_MIRROR=%q\n' "$MIRROR"
  exit 0
fi

mkdir -p "$CACHE"
if command -v flock >/dev/null 2>&1; then
  # The same lock as install.sh: one Go build of the toolchain at a time on a machine.
  exec 9>"$CACHE/.install.lock"
  if ! flock -n 9; then
    log "another toolchain build is running; waiting for $CACHE/.install.lock ..."
    flock 9
  fi
fi

total_start=$SECONDS
for p in "${ALL[@]}"; do build_one "$p"; done
((SECONDS - total_start < 5)) || log "done in $((SECONDS - total_start))s"
printf 'export TETHER_TOFU_PROVIDER_MIRROR=%q\n' "$MIRROR"
