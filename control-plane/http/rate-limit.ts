import { TetherError } from '../../common/errors.ts';
import type { Db } from '../db/database.ts';
import { addToWindow, windowOf } from '../db/limits.repository.ts';

/**
 * Failures counted per key (an address); too many in a minute and the key is refused (429).
 * `check` runs before the work and never writes; `fail` counts one. FailureLimiter keeps them in
 * this process (SQLite: one process); SharedFailureLimiter in the database, so that replicas on
 * PostgreSQL count one total.
 */
export interface FailureLimits {
  check(key: string): void | Promise<void>;
  fail(key: string): void | Promise<void>;
}

const refused = () => new TetherError('rate_limited', 'too many failed attempts from this address; try again in a minute', { status: 429, retryable: true });

/** Counts failures per key in a sliding one-minute window; too many and the key is refused (429). */
export class FailureLimiter implements FailureLimits {
  private readonly hits = new Map<string, number[]>();
  private readonly perMinute: number;
  private readonly now: () => number;
  constructor(perMinute: number, now: () => number = Date.now) {
    this.perMinute = perMinute;
    this.now = now;
  }

  check(key: string): void {
    const recent = this.recent(key);
    if (recent.length >= this.perMinute) throw refused();
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

/**
 * The same limit across replicas (PostgreSQL): a one-minute window per key in `rate_limits`, opened
 * by its first failure (limits.repository.ts). `check` is one read by primary key (a success pays
 * no write); `fail` one upsert. Keys are prefixed by `scope` (bootstrap, login).
 */
export class SharedFailureLimiter implements FailureLimits {
  private readonly db: Db;
  private readonly scope: string;
  private readonly perMinute: number;
  private readonly now: () => number;
  /** `now`: the control plane's clock (on PostgreSQL, the database's). */
  constructor(db: Db, scope: string, perMinute: number, now: () => number) {
    this.db = db;
    this.scope = scope;
    this.perMinute = perMinute;
    this.now = now;
  }

  async check(key: string): Promise<void> {
    const w = await windowOf(this.db, `${this.scope}:${key}`, 60_000, this.now());
    if (w.count >= this.perMinute) throw refused();
  }

  async fail(key: string): Promise<void> {
    await addToWindow(this.db, `${this.scope}:${key}`, 1, 60_000, this.now());
  }
}
