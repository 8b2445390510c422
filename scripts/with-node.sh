#!/usr/bin/env bash
# Runs a command with the project's Node 24 first on PATH, after the idempotent set-up.
# Usage: scripts/with-node.sh <command> [args...]   e.g. scripts/with-node.sh node control-plane/cli/main.ts server
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
bash "$root/scripts/setup.sh"
source "$root/scripts/env.sh"
export PATH="$root/node_modules/.bin:$PATH"
exec "$@"
