#!/usr/bin/env bash
# Bundles the node agent (node-agent/cli/main.ts and what it imports, npm packages included) into
# one pre-stripped ES module, dist/tether-node.mjs, which bin/tether-node and the systemd unit run;
# and the `tether` CLI into dist/tether.mjs, which bin/tether runs for client commands.
# Why: the daemon idles for months, and loading ~90 TypeScript files through Node's type stripping
# and the module loader cost it ~30 MB of resident memory (docs/node-agent.md, Footprint). Modules
# only some commands need (register, preflight, install) stay unevaluated in the file until used.
# Called by scripts/setup.sh (so by npm test, .ci/run and bin/*); rebuilds only when a source, the
# lock file or this script is newer than the bundle. Prints nothing on a warm run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$root/dist"
echo '*' > "$root/dist/.gitignore" # build output, never committed

# Rebuilt only when a source, the lock file or this script is newer than the output.
stale() { # stale <output> <source folders…>
  local out=$1
  shift
  [ ! -f "$out" ] || [ -n "$(find "$@" "$root/package-lock.json" "$root/package.json" "${BASH_SOURCE[0]}" -newer "$out" -print -quit)" ]
}
# --minify-whitespace/--minify-syntax: V8 keeps a script's whole source in memory, so a smaller file
# is a smaller heap; identifiers are kept so stack traces in the journal stay readable.
# createRequire: bundled CommonJS packages (pino, yaml, commander) call require() for Node built-ins.
esbuild=("$root/node_modules/.bin/esbuild" --bundle --platform=node --format=esm --target=node24
  --minify-whitespace --minify-syntax --legal-comments=none --log-level=warning
  "--banner:js=import { createRequire as __tetherRequire } from 'node:module'; const require = __tetherRequire(import.meta.url);")

# Split like the CLI below: the entry, the configuration, the logger and the daemon are what
# `agent` loads; commander (the other commands), node-forge (only to make a certificate request),
# registration, preflight and install are chunks an idle daemon never reads, so their source is not in its heap (V8 keeps a
# loaded script's whole source). Chunks are content-named, copied beside the old ones and the entry
# replaced atomically (a daemon starting meanwhile reads the old entry or the new one, never half
# of one). Old chunks are never removed here, unlike the CLI's: a daemon runs for months and loads
# a command's chunk (preflight, install, a renewal's node-forge) when the command comes, so a
# daemon started before a rebuild must still find its chunks (`rm -rf dist` clears them).
out="$root/dist/tether-node.mjs"
if stale "$out" "$root/node-agent" "$root/common"; then
  tmp="$root/dist/.node.$$.tmp"
  rm -rf "$tmp"
  # Node's built-ins through process.getBuiltinModule(), not `import … from 'node:x'`: an ES import
  # of a built-in builds its ES facade, which reads every export and so loads the built-in's lazy
  # parts (node:util's worker_threads, parseArgs and diff code, node:crypto's webcrypto), and the
  # banner's createRequire loads node:module and its source-map code; ~0.5 MiB an idle daemon kept
  # (docs/performance.md, issue 18, third round). Each built-in is aliased to a one-line CommonJS
  # module (a stable path, so chunk hashes stay stable) exporting an object whose prototype is the
  # built-in: esbuild's import interop copies a CommonJS module's own properties, and reading the
  # descriptors of node:util's lazy exports loads them too; through the prototype, a name is
  # looked up only when used. The banner's require() gives built-ins the same way and falls back to
  # createRequire for anything else. A dynamic import('node:x') would get only a default export from
  # the alias: the node agent's code calls process.getBuiltinModule() there instead.
  shims="$root/dist/.node-builtins"
  mkdir -p "$shims"
  builtin_alias=()
  for m in $(node -p "require('node:module').builtinModules.filter((m) => !m.startsWith('_')).map((m) => m.replace(/^node:/, '')).join(' ')"); do
    f="$shims/${m//\//_}.cjs"
    line="const m = process.getBuiltinModule('node:$m'); module.exports = typeof m === 'function' ? m : Object.create(m);"
    [ "$(cat "$f" 2>/dev/null)" = "$line" ] || echo "$line" > "$f"
    builtin_alias+=("--alias:node:$m=$f")
  done
  # The daemon's bundle also shortens identifiers (its idle chunks ~360 -> ~270 KB of source, which
  # V8 keeps); --keep-names keeps functions' and classes' names, so stack traces, error names and
  # the journal read as before.
  "${esbuild[@]}" "${builtin_alias[@]}" --minify-identifiers --keep-names "$root/node-agent/cli/main.ts" --splitting --outdir="$tmp" \
    "--banner:js=const require = (id) => process.getBuiltinModule(id) ?? process.getBuiltinModule('node:module').createRequire(import.meta.url)(id);" \
    --entry-names=tether-node --chunk-names=node-chunk-[hash] --out-extension:.js=.mjs --metafile="$tmp/meta.json"
  for f in "$tmp"/node-chunk-*.mjs; do [ -e "$root/dist/${f##*/}" ] || mv "$f" "$root/dist/"; done
  # Which sources each chunk holds (test/node-agent/bundle.test.ts: what the idle daemon loads).
  mv -f "$tmp/meta.json" "$root/dist/tether-node.meta.json"
  mv -f "$tmp/tether-node.mjs" "$out"
  rm -rf "$tmp"
fi

# The `tether` CLI, split (dist/cli/tether.mjs and chunks): a client command parses only the
# ~75 KB entry (commander, the HTTP client); what one command needs (YAML, the wire schemas, the
# bundle tooling) is a chunk loaded by that command. `tether server` is in none of it: main.ts
# imports the server by URL from the sources, and bin/tether runs `server` from the sources.
# Chunks are content-named, so new ones are copied beside the old, the entry replaced atomically,
# and chunks no longer referenced removed after a while (a command started before may still load one).
cli="$root/dist/cli"
if stale "$cli/tether.mjs" "$root/control-plane" "$root/common"; then
  tmp="$root/dist/.cli.$$.tmp"
  rm -rf "$tmp"
  "${esbuild[@]}" "$root/control-plane/cli/main.ts" --splitting --outdir="$tmp" \
    --entry-names=tether --chunk-names=chunk-[hash] --out-extension:.js=.mjs
  mkdir -p "$cli"
  for f in "$tmp"/chunk-*.mjs; do [ -e "$cli/${f##*/}" ] || mv "$f" "$cli/"; done
  mv -f "$tmp/tether.mjs" "$cli/tether.mjs"
  rm -rf "$tmp"
  live=" $(cd "$cli" && grep -ho 'chunk-[A-Z0-9]*\.mjs' ./*.mjs | sort -u | tr '\n' ' ') "
  for f in "$cli"/chunk-*.mjs; do
    case "$live" in *" ${f##*/} "*) ;; *) find "$f" -mmin +10 -delete ;; esac
  done
fi
