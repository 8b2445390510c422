/**
 * Per-agent log write quota: a token bucket of bytes per agent (refilled at `bytesPerSecond`, up to
 * `burstSeconds` worth). An agent that writes faster is refused 429 until its bucket refills; its
 * runtime keeps the lines and sends them again (common/agent/runtime.ts, LogShipper). In memory:
 * a restart gives every agent a full bucket, which the per-command cap still bounds.
 */
import { TetherError } from '../../common/errors.ts';

interface Bucket {
  tokens: number;
  at: number;
}

export class LogQuota {
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
    if (bytes > b.tokens) {
      throw new TetherError('rate_limited', `log writes of this agent are limited to ${this.rate} bytes/s; send these lines again later`, { status: 429, retryable: true });
    }
    b.tokens -= bytes;
  }

  /** Forgets agents whose bucket would be full again (they start full anyway). */
  private prune(now: number) {
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) / 1000) * this.rate >= this.burst) this.buckets.delete(k);
    if (this.buckets.size >= 100_000) this.buckets.clear();
  }
}
