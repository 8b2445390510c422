import { TetherError } from '../../common/errors.ts';

/** Counts failures per key in a sliding one-minute window; too many and the key is refused (429). */
export class FailureLimiter {
  private readonly hits = new Map<string, number[]>();
  private readonly perMinute: number;
  private readonly now: () => number;
  constructor(perMinute: number, now: () => number = Date.now) {
    this.perMinute = perMinute;
    this.now = now;
  }

  check(key: string): void {
    const recent = this.recent(key);
    if (recent.length >= this.perMinute) {
      throw new TetherError('rate_limited', 'too many failed attempts from this address; try again in a minute', { status: 429, retryable: true });
    }
  }

  fail(key: string): void {
    const recent = this.recent(key);
    recent.push(this.now());
    this.hits.set(key, recent);
    if (this.hits.size > 10_000) this.prune();
  }

  private recent(key: string): number[] {
    const cutoff = this.now() - 60_000;
    return (this.hits.get(key) ?? []).filter((t) => t > cutoff);
  }

  private prune() {
    const cutoff = this.now() - 60_000;
    for (const [k, v] of this.hits) if (!v.some((t) => t > cutoff)) this.hits.delete(k);
  }
}
