/**
 * Each agent's request rate on the agent API, per route class: a token bucket per (agent, class)
 * in this process's memory (per replica; a restart gives every agent full buckets). Checked after
 * authentication and before the body is read, so a hostile or broken agent flooding heartbeats,
 * polls, results or log batches costs a map lookup per request and a 429 with `Retry-After`, and
 * the other agents keep being served. The defaults are far above what a working agent sends (a
 * heartbeat every 5 s, a poll per 50 s (25 s for older agents) or per claimed command, a result and a few log batches per
 * command); the size and byte limits (body size, log bytes per agent) stay as they were.
 */
import { z } from 'zod';
import { TetherError } from '../../common/errors.ts';

export const AGENT_ROUTE_CLASSES = ['heartbeat', 'poll', 'result', 'logs', 'other'] as const;
export type AgentRouteClass = (typeof AGENT_ROUTE_CLASSES)[number];

const rate = z.object({
  /** Sustained requests per second. */
  perSecond: z.number().gt(0).max(1_000_000),
  /** Requests allowed at once (the bucket's size). */
  burst: z.number().int().min(1).max(10_000_000),
});
export type AgentRate = z.infer<typeof rate>;

/**
 * Heartbeats: 10/s, the fastest an agent can be configured to send (--heartbeat-interval-ms 100),
 * 50 times the default. Polls: one per claimed command. Results and logs: a busy agent's many
 * short commands. Other: whoami, renewal (limited on its own), the node agents' VPN routes.
 */
export const DEFAULT_AGENT_RATES: Record<AgentRouteClass, AgentRate> = {
  heartbeat: { perSecond: 10, burst: 100 },
  poll: { perSecond: 50, burst: 500 },
  result: { perSecond: 100, burst: 1000 },
  logs: { perSecond: 200, burst: 2000 },
  other: { perSecond: 10, burst: 100 },
};

/** The server config's `agentRequestRates` (config.ts): `false` turns the limit off (benchmarks). */
export const agentRatesSchema = z
  .union([
    z.literal(false),
    z.object({
      heartbeat: rate.default(DEFAULT_AGENT_RATES.heartbeat),
      poll: rate.default(DEFAULT_AGENT_RATES.poll),
      result: rate.default(DEFAULT_AGENT_RATES.result),
      logs: rate.default(DEFAULT_AGENT_RATES.logs),
      other: rate.default(DEFAULT_AGENT_RATES.other),
    }),
  ])
  .default(DEFAULT_AGENT_RATES);
export type AgentRates = z.infer<typeof agentRatesSchema>;

/**
 * `TETHER_AGENT_RATE_LIMITS`: `off`, or `class=perSecond/burst` pairs separated by commas
 * (`heartbeat=2/60,logs=100/1000`); classes not named keep their defaults. An error names what is wrong.
 */
export function parseAgentRates(spec: string): AgentRates | { error: string } {
  const s = spec.trim();
  if (s === 'off') return false;
  const out: Record<AgentRouteClass, AgentRate> = { ...DEFAULT_AGENT_RATES };
  for (const part of s.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([a-z]+)=([0-9.]+)\/([0-9]+)$/.exec(part);
    const cls = m?.[1] as AgentRouteClass | undefined;
    if (!m || !cls || !AGENT_ROUTE_CLASSES.includes(cls)) return { error: `agent rate limits: '${part}' is not <class>=<per second>/<burst> with a class among ${AGENT_ROUTE_CLASSES.join(', ')}` };
    const r = rate.safeParse({ perSecond: Number(m[2]), burst: Number(m[3]) });
    if (!r.success) return { error: `agent rate limits: '${part}': per second above 0, burst a whole number from 1` };
    out[cls] = r.data;
  }
  return out;
}

/** 429 rate_limited with the seconds after which one request of the class will pass. */
export class AgentRateLimited extends TetherError {
  readonly retryAfterSeconds: number;
  /** The first refusal since this agent's class was last let through (the one worth logging). */
  readonly first: boolean;
  constructor(cls: AgentRouteClass, r: AgentRate, retryAfterSeconds: number, first: boolean) {
    super('rate_limited', `this agent sends too many ${cls} requests (at most ${r.perSecond}/s, ${r.burst} at once); try again in ${retryAfterSeconds} s`, { status: 429, retryable: true });
    this.retryAfterSeconds = retryAfterSeconds;
    this.first = first;
  }
}

interface Bucket {
  tokens: number;
  at: number;
  refused: boolean;
}

const MAX_BUCKETS = 200_000;

export class AgentRateLimiter {
  private readonly rates: Record<AgentRouteClass, AgentRate>;
  /**
   * The buckets, one map per class keyed by agent id: the id is the authenticated principal's
   * string, the same one request after request, so a lookup hashes nothing new (a `class\0agent`
   * key built per request was a new string to hash every time: issue 18's held profile).
   */
  private readonly buckets = new Map<AgentRouteClass, Map<string, Bucket>>(AGENT_ROUTE_CLASSES.map((c) => [c, new Map()]));
  private size = 0;
  private readonly now: () => number;
  private readonly onRefused: (cls: AgentRouteClass) => void;

  constructor(rates: Exclude<AgentRates, false>, o: { now?: () => number; onRefused?: (cls: AgentRouteClass) => void } = {}) {
    this.rates = rates;
    this.now = o.now ?? (() => performance.now());
    this.onRefused = o.onRefused ?? (() => undefined);
  }

  /**
   * Takes one request of `cls` from the agent's bucket, and one of `also` when given (a request
   * that is two in one: a result that also claims the next command counts as a result and a
   * poll), or throws AgentRateLimited taking nothing from either.
   */
  take(agentId: string, cls: AgentRouteClass, also?: AgentRouteClass): void {
    const now = this.now();
    const b = this.refill(agentId, cls, now);
    const b2 = also === undefined || also === cls ? undefined : this.refill(agentId, also, now);
    if (b.tokens < 1) this.refuse(cls, b);
    if (b2 && b2.tokens < 1) this.refuse(also!, b2);
    b.tokens -= 1;
    b.refused = false;
    if (b2) {
      b2.tokens -= 1;
      b2.refused = false;
    }
  }

  /** The agent's bucket of `cls`, made or refilled up to `now`. */
  private refill(agentId: string, cls: AgentRouteClass, now: number): Bucket {
    const r = this.rates[cls];
    const map = this.buckets.get(cls)!;
    let b = map.get(agentId);
    if (!b) {
      if (this.size >= MAX_BUCKETS) this.prune(now);
      b = { tokens: r.burst, at: now, refused: false };
      map.set(agentId, b);
      this.size++;
    }
    b.tokens = Math.min(r.burst, b.tokens + ((now - b.at) / 1000) * r.perSecond);
    b.at = now;
    return b;
  }

  private refuse(cls: AgentRouteClass, b: Bucket): never {
    const r = this.rates[cls];
    const first = !b.refused;
    b.refused = true;
    this.onRefused(cls);
    throw new AgentRateLimited(cls, r, Math.max(1, Math.ceil((1 - b.tokens) / r.perSecond)), first);
  }

  /** Forgets buckets that would be full again (they start full anyway). */
  private prune(now: number): void {
    for (const [cls, map] of this.buckets) {
      const r = this.rates[cls];
      for (const [k, b] of map) if (b.tokens + ((now - b.at) / 1000) * r.perSecond >= r.burst) map.delete(k);
    }
    this.size = 0;
    for (const map of this.buckets.values()) this.size += map.size;
    if (this.size >= MAX_BUCKETS) {
      for (const map of this.buckets.values()) map.clear();
      this.size = 0;
    }
  }
}
