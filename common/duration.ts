/** Durations such as 30s, 15m, 1h, 7d. No imports: the CLI parses `--ttl` without loading zod. */
export const DURATION_RE = /^(\d+)(s|m|h|d)$/;

export function parseDurationSeconds(d: string): number {
  const m = DURATION_RE.exec(d);
  if (!m) throw new Error(`invalid duration ${d}`);
  const n = Number(m[1]);
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
  return n * unit;
}
