/**
 * Per-agent log write quota: a token bucket of bytes per agent (refilled at `bytesPerSecond`, up to
 * `burstSeconds` worth). An agent that writes faster is refused 429 until its bucket refills; its
 * runtime keeps the lines and sends them again (common/agent/runtime.ts, LogShipper). In memory:
 * a restart gives every agent a full bucket, which the per-command cap still bounds.
 *
 * Replicas on PostgreSQL share one rate per agent instead (SharedLogQuota): a window of
 * `burstSeconds` per agent in `rate_limits` (limits.repository.ts, on the control plane's clock, the database's) that holds
 * at most `burstSeconds` worth of bytes, so an agent sends the same burst and the same average
 * however its batches spread over replicas. Not batched: one upsert per log batch (a batch is
 * already a database write of its lines), exact across replicas; a refused batch takes nothing.
 */
import { TetherError } from '../../common/errors.ts';
import type { Db } from '../db/database.ts';
import { addToWindow } from '../db/limits.repository.ts';

/** Takes an agent's log bytes, or refuses (429 rate_limited) taking nothing. */
export interface LogRate {
  take(agentId: string, bytes: number): void | Promise<void>;
}

const refused = (rate: number) =>
  new TetherError('rate_limited', `log writes of this agent are limited to ${rate} bytes/s; send these lines again later`, { status: 429, retryable: true });

interface Bucket {
  tokens: number;
  at: number;
}

export class LogQuota implements LogRate {
  private readonly buckets = new Map<string, Bucket>();
  private readonly rate: number;
  private readonly burst: number;
  private readonly now: () => number;

  constructor(bytesPerSecond: number, opts: { burstSeconds?: number; now?: () => number } = {}) {
    this.rate = bytesPerSecond;
    this.burst = bytesPerSecond * (opts.burstSeconds ?? 8);
    this.now = opts.now ?? (() => performance.now());
  }

  /** Takes `bytes` from the agent's bucket, or refuses (429 rate_limited) taking nothing. */
  take(agentId: string, bytes: number): void {
    const now = this.now();
    let b = this.buckets.get(agentId);
    if (!b) {
      if (this.buckets.size >= 100_000) this.prune(now);
      b = { tokens: this.burst, at: now };
      this.buckets.set(agentId, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate);
    b.at = now;
    if (bytes > b.tokens) throw refused(this.rate);
    b.tokens -= bytes;
  }

  /** Forgets agents whose bucket would be full again (they start full anyway). */
  private prune(now: number) {
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) / 1000) * this.rate >= this.burst) this.buckets.delete(k);
    if (this.buckets.size >= 100_000) this.buckets.clear();
  }
}

/** The per-agent log rate across replicas (PostgreSQL): see the top of this file. */
export class SharedLogQuota implements LogRate {
  private readonly db: Db;
  private readonly rate: number;
  private readonly windowMs: number;
  private readonly limit: number;
  private readonly now: () => number;

  /** `now`: the control plane's clock (on PostgreSQL, the database's). */
  constructor(db: Db, bytesPerSecond: number, now: () => number, opts: { burstSeconds?: number } = {}) {
    this.db = db;
    this.now = now;
    this.rate = bytesPerSecond;
    const seconds = opts.burstSeconds ?? 8;
    this.windowMs = seconds * 1000;
    this.limit = bytesPerSecond * seconds;
  }

  async take(agentId: string, bytes: number): Promise<void> {
    if (bytes > this.limit) throw refused(this.rate);
    const r = await addToWindow(this.db, `log:${agentId}`, bytes, this.windowMs, this.now(), this.limit);
    if (!r.added) throw refused(this.rate);
  }
}
