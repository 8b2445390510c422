#!/usr/bin/env bash
# `npm test`: set-up (Node 24, npm ci), the pinned test toolchain (etcd, kube-apiserver, helm,
# tofu, and the tofu providers random and kubernetes in a filesystem mirror; built once into
# ~/.cache/tether), host packages the node-agent tests need and PostgreSQL (when root),
# then the whole mocha suite. Extra arguments go to mocha (e.g. a file or --grep).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
# shellcheck source=env.sh
source scripts/env.sh
eval "$(bash test/toolchain/install.sh)"
eval "$(bash test/toolchain/providers.sh)"
eval "$(bash test/toolchain/lazyfs.sh)"
if [ -f test/node-agent/setup.sh ]; then
  if [ "$(id -u)" = 0 ]; then bash test/node-agent/setup.sh; else echo "test: not root; the WireGuard/netns tests will say why they skip" >&2; fi
fi
# PostgreSQL (Debian's package) for the storage tests on both dialects (test/support/postgres.ts).
if [ "$(id -u)" = 0 ] && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
fi
# mimalloc (Debian's libmimalloc2.0), the control plane's allocator (bin/tether server;
# test/control-plane/server-allocator.test.ts).
if [ "$(id -u)" = 0 ] && ! dpkg -s libmimalloc2.0 >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libmimalloc2.0
fi
if [ $# -eq 0 ]; then set -- "test/**/*.test.ts"; fi
exec node_modules/.bin/mocha "$@"
