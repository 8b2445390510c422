#!/usr/bin/env bash
# Project lint: the typecheck plus the rules no compiler checks.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
fail=0
say() { printf 'lint: %s\n' "$*" >&2; fail=1; }

node_modules/.bin/tsc --noEmit -p . || say "typecheck failed"
# The console (browser code, its own tsconfig: DOM, JSX) is not in the root project.
node_modules/.bin/tsc --noEmit -p console || say "console typecheck failed"

src=(common control-plane cluster-agent node-agent bundles)
# Focused tests would make CI run a subset.
grep -rEn '\b(it|describe|context)\.only\(' test --include='*.ts' && say "a test is focused with .only"
# Child processes get argument arrays, never a shell.
grep -rEn 'shell:\s*true|execSync\(|exec\(\s*`' "${src[@]}" --include='*.ts' 2>/dev/null && say "a child process is started through a shell"
# SQL lives in the control plane's db folder only.
grep -rEln "\b(selectFrom|insertInto|updateTable|deleteFrom)\(|sql\`" "${src[@]}" --include='*.ts' 2>/dev/null | grep -v '^control-plane/db/' && say "SQL outside control-plane/db"
# The three programs never import each other.
for p in control-plane cluster-agent node-agent; do
  for q in control-plane cluster-agent node-agent; do
    [ "$p" = "$q" ] && continue
    grep -rEn "from '(\.\./)+$q/" "$p" --include='*.ts' 2>/dev/null && say "$p imports $q"
  done
done
grep -rEn "from '(\.\./)+(control-plane|cluster-agent|node-agent)/" common --include='*.ts' 2>/dev/null && say "common imports a program"
# No console.log in the programs (pino, or process.stdout for CLI output).
grep -rEn 'console\.log\(' "${src[@]}" --include='*.ts' 2>/dev/null && say "console.log in program code"
# docs/api.openapi.yaml is generated from the route table and the server's zod schemas: valid
# OpenAPI (@readme/openapi-parser) and identical to what the code generates.
node scripts/openapi.ts --check || say "docs/api.openapi.yaml: regenerate with \`node scripts/openapi.ts --write\`"
exit $fail
