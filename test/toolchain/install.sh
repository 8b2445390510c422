#!/usr/bin/env bash
# Builds the pinned test toolchain (etcd, kube-apiserver, kubectl, helm, tofu, and for the kubelet
# cluster kube-controller-manager, kube-scheduler, kubelet, kube-proxy) ONCE into a cache
# outside the repo:  ${TETHER_CACHE:-$HOME/.cache/tether}/<tool>-<version>/<tool>
#
# Usage:
#   bash test/toolchain/install.sh                      # build whatever is missing (all tools)
#   bash test/toolchain/install.sh etcd kube-apiserver  # only these tools
#   bash test/toolchain/install.sh --print-env [tools]  # build nothing; print exports (fails if missing)
#   eval "$(bash test/toolchain/install.sh)"            # build + export TETHER_*_BIN in this shell
#
# Progress goes to stderr; stdout carries only `export TETHER_<TOOL>_BIN=...` lines.
# Versions are pinned in versions.env; each tool is built with `go build` from a wrapper module in
# test/toolchain/<dir>/ whose go.mod/go.sum pin the full dependency graph.
# Idempotent: a tool is rebuilt only when its binary is missing or its build recipe
# (go.mod, go.sum, package, ldflags) changed. Concurrent runs are serialised with flock.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE="${TETHER_CACHE:-$HOME/.cache/tether}"
ALL_TOOLS=(etcd kube-apiserver kubectl helm tofu kube-controller-manager kube-scheduler kubelet kube-proxy)
# Bump to force a rebuild of everything when the recipe below changes in a way the stamp can't see.
RECIPE_REVISION=1

log() { printf '[toolchain] %s\n' "$*" >&2; }
die() { printf '[toolchain] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
}

# --- per-tool recipe -------------------------------------------------------------------------
# Sets: T_DIR (wrapper module dir), T_MOD (required module), T_VER, T_PKG (main package), T_LDFLAGS
recipe() {
  local tool="$1"
  case "$tool" in
    etcd)
      T_DIR=etcd T_MOD=go.etcd.io/etcd/server/v3 T_VER="$ETCD_VERSION"
      T_PKG=go.etcd.io/etcd/server/v3
      T_LDFLAGS="-s -w"
      ;;
    kube-apiserver | kubectl | kube-controller-manager | kube-scheduler | kubelet | kube-proxy)
      local minor="${KUBERNETES_VERSION#v1.}"
      minor="${minor%%.*}"
      T_DIR=kubernetes T_MOD=k8s.io/kubernetes T_VER="$KUBERNETES_VERSION"
      T_PKG="k8s.io/kubernetes/cmd/$tool"
      T_LDFLAGS="-s -w"
      local p
      for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        T_LDFLAGS+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        T_LDFLAGS+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
      done
      ;;
    helm)
      T_DIR=helm T_MOD=helm.sh/helm/v3 T_VER="$HELM_VERSION"
      T_PKG=helm.sh/helm/v3/cmd/helm
      T_LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
      T_LDFLAGS+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
      local p
      for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        T_LDFLAGS+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$HELM_K8S_MINOR"
      done
      ;;
    tofu)
      T_DIR=tofu T_MOD=github.com/opentofu/opentofu T_VER="$TOFU_VERSION"
      T_PKG=github.com/opentofu/opentofu/cmd/tofu
      # dev=no: report a release version ("OpenTofu v1.10.10"), not "-dev".
      T_LDFLAGS="-s -w -X github.com/opentofu/opentofu/version.dev=no"
      ;;
    *) die "unknown tool '$tool' (known: ${ALL_TOOLS[*]})" ;;
  esac
}

bin_path() { # tool -> cache path (version from versions.env)
  recipe "$1"
  printf '%s/%s-%s/%s' "$CACHE" "$1" "$T_VER" "$1"
}

env_name() { # kube-apiserver -> TETHER_KUBE_APISERVER_BIN
  local up="${1^^}"
  printf 'TETHER_%s_BIN' "${up//-/_}"
}

stamp_of() { # tool -> hash of everything that determines the binary
  recipe "$1"
  {
    printf 'revision=%s\ntool=%s\npkg=%s\nldflags=%s\n' "$RECIPE_REVISION" "$1" "$T_PKG" "$T_LDFLAGS"
    cat "$HERE/$T_DIR/go.mod" "$HERE/$T_DIR/go.sum"
  } | sha256sum | cut -d' ' -f1
}

check_pin() { # the wrapper go.mod must require exactly the version from versions.env
  recipe "$1"
  local gomod="$HERE/$T_DIR/go.mod"
  [[ -f "$gomod" && -f "$HERE/$T_DIR/go.sum" ]] || die "$1: missing $T_DIR/go.mod or go.sum"
  if ! grep -Eq "^[[:space:]]*(require[[:space:]]+)?${T_MOD//./\\.}[[:space:]]+${T_VER//./\\.}([[:space:]]|$)" "$gomod"; then
    die "$1: $T_DIR/go.mod does not require $T_MOD $T_VER (versions.env and go.mod disagree)"
  fi
}

build_one() {
  local tool="$1"
  check_pin "$tool"
  local bin dir stamp
  bin="$(bin_path "$tool")"
  dir="$(dirname "$bin")"
  stamp="$(stamp_of "$tool")"
  if [[ -x "$bin" && -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$stamp" ]]; then
    log "$tool $T_VER: cached ($bin)"
    return 0
  fi
  command -v go >/dev/null 2>&1 || die "$tool: 'go' not found on PATH (needed to build the toolchain)"
  mkdir -p "$dir"
  local tmp="$dir/.$tool.tmp.$$"
  log "$tool $T_VER: building $T_PKG (go $(go env GOVERSION)) ..."
  local start=$SECONDS
  # Run in the wrapper module: its go.mod/go.sum pin the whole graph. CGO off = static binaries,
  # as upstream releases them. GOCACHE/GOMODCACHE stay at their defaults so reruns are fast.
  if ! (
    cd "$HERE/$T_DIR" &&
      CGO_ENABLED=0 GOWORK=off GOFLAGS="-buildvcs=false -mod=mod" \
        go build -trimpath -ldflags="$T_LDFLAGS" -o "$tmp" "$T_PKG"
  ); then
    rm -f "$tmp"
    die "$tool: go build failed (see above)"
  fi
  mv -f "$tmp" "$bin"
  printf '%s\n' "$stamp" >"$dir/.stamp"
  log "$tool $T_VER: built in $((SECONDS - start))s -> $bin ($(du -h "$bin" | cut -f1))"
}

# --- main ------------------------------------------------------------------------------------
print_only=0
tools=()
for arg in "$@"; do
  case "$arg" in
    --print-env) print_only=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) usage; die "unknown option '$arg'" ;;
    *)
      recipe "$arg" # validates the name
      tools+=("$arg")
      ;;
  esac
done
((${#tools[@]})) || tools=("${ALL_TOOLS[@]}")

if ((print_only)); then
  missing=0
  for t in "${tools[@]}"; do
    b="$(bin_path "$t")"
    if [[ -x "$b" ]]; then
      printf 'export %s=%q\n' "$(env_name "$t")" "$b"
    else
      log "$t: not installed at $b (run: bash test/toolchain/install.sh $t)"
      missing=1
    fi
  done
  exit "$missing"
fi

mkdir -p "$CACHE"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.install.lock"
  if ! flock -n 9; then
    log "another install.sh is running; waiting for $CACHE/.install.lock ..."
    flock 9
  fi
else
  log "warning: flock not found; not locking against concurrent runs"
fi

total_start=$SECONDS
for t in "${tools[@]}"; do
  build_one "$t"
done
((SECONDS - total_start < 5)) || log "done in $((SECONDS - total_start))s"

for t in "${tools[@]}"; do
  printf 'export %s=%q\n' "$(env_name "$t")" "$(bin_path "$t")"
done
