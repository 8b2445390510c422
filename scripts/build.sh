#!/usr/bin/env bash
# Bundles the node agent (node-agent/cli/main.ts and what it imports, npm packages included) into
# one pre-stripped ES module, dist/tether-node.mjs, which bin/tether-node and the systemd unit run.
# Why: the daemon idles for months, and loading ~90 TypeScript files through Node's type stripping
# and the module loader cost it ~30 MB of resident memory (docs/node-agent.md, Footprint). Modules
# only some commands need (register, preflight, install) stay unevaluated in the file until used.
# Called by scripts/setup.sh (so by npm test, .ci/run and bin/*); rebuilds only when a source, the
# lock file or this script is newer than the bundle. Prints nothing on a warm run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/dist/tether-node.mjs"
if [ -f "$out" ] && [ -z "$(find "$root/node-agent" "$root/common" "$root/package-lock.json" "$root/package.json" "${BASH_SOURCE[0]}" -newer "$out" -print -quit)" ]; then
  exit 0
fi
mkdir -p "$root/dist"
echo '*' > "$root/dist/.gitignore" # build output, never committed
tmp="$out.$$.tmp"
# --minify-whitespace/--minify-syntax: V8 keeps a script's whole source in memory, so a smaller file
# is a smaller heap; identifiers are kept so stack traces in the journal stay readable.
# createRequire: bundled CommonJS packages (pino, yaml, commander) call require() for Node built-ins.
"$root/node_modules/.bin/esbuild" "$root/node-agent/cli/main.ts" \
  --bundle --platform=node --format=esm --target=node24 \
  --minify-whitespace --minify-syntax --legal-comments=none --log-level=warning \
  --banner:js="import { createRequire as __tetherRequire } from 'node:module'; const require = __tetherRequire(import.meta.url);" \
  --outfile="$tmp"
# Atomic: a daemon starting meanwhile reads the old file or the new one, never half of one.
mv -f "$tmp" "$out"
