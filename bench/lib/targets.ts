/**
 * The performance targets of docs/performance.md, each reported as met or not by the run that
 * measured it: a number, its unit, the bound and how it compares. `met` is derived from the
 * numbers, never set by hand; a figure measured under other conditions than the target's (fewer
 * agents, say) is not met and says why in `note`.
 */

export type Comparison = '<=' | '<' | '>=' | '==';

export interface Target {
  name: string;
  value: number;
  unit: string;
  comparison: Comparison;
  target: number;
  met: boolean;
  /** What the run measured that differs from the target's conditions, or what the value includes. */
  note?: string;
}

export function compare(value: number, comparison: Comparison, target: number): boolean {
  if (!Number.isFinite(value)) return false;
  switch (comparison) {
    case '<=':
      return value <= target;
    case '<':
      return value < target;
    case '>=':
      return value >= target;
    case '==':
      return value === target;
  }
}

export class Targets {
  readonly list: Target[] = [];

  /** `conditionsMet` false: the figure was measured, but not under the target's conditions (see `note`). */
  add(t: { name: string; value: number; unit: string; comparison: Comparison; target: number; note?: string; conditionsMet?: boolean }): Target {
    const met = (t.conditionsMet ?? true) && compare(t.value, t.comparison, t.target);
    const entry: Target = { name: t.name, value: t.value, unit: t.unit, comparison: t.comparison, target: t.target, met, ...(t.note ? { note: t.note } : {}) };
    this.list.push(entry);
    return entry;
  }

  /** The printed table: one line per target, its value, its bound, met yes/NO. */
  render(): string {
    if (this.list.length === 0) return '';
    const w = [52, 22, 22];
    const line = (c: string[]) => c.map((x, i) => x.padEnd(w[i]!)).join(' | ');
    const fmt = (v: number) => (Number.isFinite(v) ? v.toLocaleString('en-US', { maximumFractionDigits: 2 }) : 'not measured');
    return [
      `targets: ${this.list.filter((t) => t.met).length} of ${this.list.length} met`,
      line(['target', 'value', 'bound']) + ' | met',
      w.map((n) => '-'.repeat(n)).join('-|-') + '-|----',
      ...this.list.map((t) => line([t.name, `${fmt(t.value)} ${t.unit}`, `${t.comparison} ${fmt(t.target)} ${t.unit}`]) + ` | ${t.met ? 'yes' : 'NO'}${t.note ? `  (${t.note})` : ''}`),
    ].join('\n');
  }
}
