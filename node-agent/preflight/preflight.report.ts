import type { PreflightReport } from './preflight.checks.ts';

const MARK = { pass: 'PASS', warn: 'WARN', fail: 'FAIL' } as const;

/** The human table: one row per check, then the summary line. */
export function renderReport(r: PreflightReport): string {
  const w = Math.max(5, ...r.checks.map((c) => c.name.length));
  const lines = [`${'CHECK'.padEnd(w)}  STATUS  DETAIL`];
  for (const c of r.checks) lines.push(`${c.name.padEnd(w)}  ${MARK[c.status].padEnd(6)}  ${c.detail}`);
  lines.push('', `${r.summary.pass} passed, ${r.summary.warn} warnings, ${r.summary.fail} failed: ${r.summary.ok ? 'ready' : 'NOT ready'}`);
  return `${lines.join('\n')}\n`;
}
