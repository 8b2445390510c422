/**
 * A load-generator process (forked by bench/main.ts): a slice of simulated agents, each with its
 * own certificate and the agents' own HTTP/2 client (common/http2-client.ts: one mTLS connection
 * per agent carrying the held long-poll, heartbeats and results, TLS sessions resumed on
 * reconnect, as the real agent runtime has), long-polling /v1/agent/poll and heartbeating every
 * 5 s from a jittered start. Poll failures back off like the runtime (1 s doubling to 60 s,
 * randomised, ended early by a heartbeat that gets through; the control plane's Retry-After when it
 * gives one, heartbeats quiet meanwhile). Figures go back to the parent over IPC.
 */
import { join } from 'node:path';
import { Http2Client } from '../common/http2-client.ts';
import { HttpError } from '../common/http-client.ts';
import { loadIdentities, loadKeys, type Identity } from './lib/identities.ts';
import { Reservoir, nowMs, sleep } from './lib/util.ts';
import { retryDelay } from '../common/agent/retry.plan.ts';

/** BENCH_AGENT_RETRY_AFTER=0: the simulated agents ignore Retry-After, as agents before issue 18 did (before/after runs). */
const HONOUR_RETRY_AFTER = process.env.BENCH_AGENT_RETRY_AFTER !== '0';
/**
 * BENCH_AGENT_RESULT_NEXT=0: a result, then a poll (two requests per command, as before issue 18's
 * result?next=N); by default the result claims the next command in the same request, as the runtime.
 */
export const RESULT_NEXT = process.env.BENCH_AGENT_RESULT_NEXT !== '0';
/** Poll retries that waited out a Retry-After (since the last reset). */
let retryAfterWaits = 0;

export interface LoadgenStart {
  type: 'start';
  url: string;
  caPem: string;
  identityDir: string;
  from: number;
  to: number;
  heartbeatMs: number;
  pollWaitSeconds: number;
  rampMs: number;
  /** ack: report every claimed command as succeeded at once (with retries, like the outbox). */
  mode: 'ack' | 'hold';
  localAddresses: number;
}

export type ParentMessage = LoadgenStart | { type: 'report'; reset?: boolean } | { type: 'mark' } | { type: 'stop' };

export interface LoadgenStats {
  type: 'stats';
  agents: number;
  /** Agents whose last heartbeat succeeded. */
  healthy: number;
  /** Agents with at least one successful request since start. */
  connected: number;
  hbOk: number;
  hbErr: number;
  hbLatency: number[];
  pollOk: number;
  pollErr: number;
  claims: { id: number; at: number }[];
  resultsOk: number;
  resultsErr: number;
  /** Result requests sent (every attempt; with next or not). Poll requests are pollOk + pollErr. */
  resultRequests: number;
  /** Answers to a result with next that carried `next` (a poll's answer, no poll sent for it). */
  resultNext: number;
  resultDone: { id: number; at: number }[];
  /** Since the last mark: agents that had a successful heartbeat, and their times (ms after the mark). */
  recoveredHb: number[];
  /** Since the last mark: agents whose poll was answered or is being held past 2 s after a successful (re)connect. */
  recoveredPoll: number[];
  /** TLS connections made since start, and how many resumed a session. */
  tlsConnects: number;
  tlsResumed: number;
  /** Poll retries that waited out the control plane's Retry-After. */
  retryAfterWaits: number;
  errors: Record<string, number>;
  /** The Go load generator's own GC since start (cycles, CPU ms, of it mark assists, live heap); absent from this one. */
  gc?: { cycles: number; cpuMs: number; assistCpuMs: number; heapLiveMB: number };
}

let cfg: LoadgenStart;
let stopped = false;
const hbLat = new Reservoir(100_000);
const stats = { hbOk: 0, hbErr: 0, pollOk: 0, pollErr: 0, resultsOk: 0, resultsErr: 0, resultRequests: 0, resultNext: 0 };
type PollAnswer = { command?: { id: number; leaseId: string } | null };
let claims: { id: number; at: number }[] = [];
let resultDone: { id: number; at: number }[] = [];
const errors: Record<string, number> = {};
let markAt = 0;

class SimAgent {
  readonly client: Http2Client;
  healthy = false;
  connected = false;
  hbInFlight = false;
  beats = 0;
  wake: (() => void) | undefined;
  recHb = -1;
  recPoll = -1;
  private timer: NodeJS.Timeout | undefined;

  constructor(id: Identity, key: string, index: number) {
    this.client = new Http2Client({
      baseUrl: cfg.url,
      ca: cfg.caPem,
      cert: id.certPem,
      key,
      userAgent: 'tether-agent',
      localAddress: `127.0.0.${1 + (index % cfg.localAddresses)}`,
    });
  }

  async request(method: string, path: string, body: unknown, timeoutMs: number): Promise<{ status: number; json: any; retryAfterMs?: number | undefined }> {
    try {
      const r = await this.client.request(method, path, body, { timeoutMs });
      return { status: r.status, json: r.body };
    } catch (err) {
      if (err instanceof HttpError) return { status: err.status, json: undefined, retryAfterMs: HONOUR_RETRY_AFTER ? err.retryAfterMs : undefined };
      throw err;
    }
  }

  /** As the runtime: nothing is sent before a Retry-After the control plane gave has passed. */
  quietUntil = 0;

  start(delay: number): void {
    setTimeout(() => {
      if (stopped) return;
      void this.heartbeat();
      this.timer = setInterval(() => void this.heartbeat(), cfg.heartbeatMs);
      void this.pollLoop();
    }, delay);
  }

  stop(): void {
    clearInterval(this.timer);
    this.client.close();
  }

  private ok(): void {
    this.connected = true;
  }

  async heartbeat(): Promise<void> {
    if (this.hbInFlight || stopped || Date.now() < this.quietUntil) return;
    this.hbInFlight = true;
    const t0 = nowMs();
    try {
      const r = await this.request('POST', '/v1/agent/heartbeat', heartbeatBody(this.beats++), 10_000);
      if (r.retryAfterMs !== undefined) this.quietUntil = Math.max(this.quietUntil, Date.now() + retryDelay({ attempt: 1, retryAfterMs: r.retryAfterMs, minBackoffMs: 1000, maxBackoffMs: 60_000, random: Math.random() }).ms);
      if (r.status !== 200) throw new Error(`http_${r.status}`);
      const t1 = nowMs();
      hbLat.add(t1 - t0);
      stats.hbOk++;
      this.healthy = true;
      this.ok();
      this.wake?.();
      if (markAt && this.recHb < 0 && t0 >= markAt) this.recHb = t1 - markAt;
    } catch (err) {
      stats.hbErr++;
      this.healthy = false;
      count(err);
    } finally {
      this.hbInFlight = false;
    }
  }

  private async pollLoop(): Promise<void> {
    let attempt = 0;
    // The next command as a result's answer gave it (result?next=N): taken as a poll's answer.
    let given: PollAnswer | undefined;
    while (!stopped) {
      if (given) {
        const cmd = given.command;
        given = undefined;
        if (cmd) {
          claims.push({ id: cmd.id, at: nowMs() });
          if (cfg.mode === 'ack') given = await this.report(cmd);
        }
        continue;
      }
      const t0 = nowMs();
      const held = setTimeout(() => {
        // Still held 2 s after it was sent: the control plane has this agent's poll.
        if (markAt && this.recPoll < 0 && t0 >= markAt) this.recPoll = t0 - markAt;
      }, 2000);
      let retryAfterMs: number | undefined;
      try {
        const r = await this.request('GET', `/v1/agent/poll?wait=${cfg.pollWaitSeconds}`, undefined, (cfg.pollWaitSeconds + 15) * 1000);
        clearTimeout(held);
        retryAfterMs = r.retryAfterMs;
        if (r.status !== 200) throw new Error(`http_${r.status}`);
        stats.pollOk++;
        attempt = 0;
        this.ok();
        if (markAt && this.recPoll < 0 && t0 >= markAt) this.recPoll = nowMs() - markAt;
        const cmd = r.json?.command as { id: number; leaseId: string } | null | undefined;
        if (cmd) {
          claims.push({ id: cmd.id, at: nowMs() });
          if (cfg.mode === 'ack') given = await this.report(cmd);
        }
      } catch (err) {
        clearTimeout(held);
        stats.pollErr++;
        count(err);
        attempt++;
        // As the runtime (retry.plan.ts): the control plane's Retry-After, bounded and jittered,
        // with heartbeats quiet meanwhile; else 1 s doubling to 60 s, randomised.
        const d = retryDelay({ attempt, retryAfterMs, minBackoffMs: 1000, maxBackoffMs: 60_000, random: Math.random() });
        if (d.cause === 'retry_after') {
          retryAfterWaits++;
          this.quietUntil = Math.max(this.quietUntil, Date.now() + d.ms);
          await sleep(this.quietUntil - Date.now());
          attempt = 0; // as the runtime: a failure after the wait backs off from the start
          continue;
        }
        const delay = d.ms;
        // As the runtime: a heartbeat that gets through ends the backoff.
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, delay);
          this.wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wake = undefined;
      }
    }
  }

  /**
   * Delivers a result like the runtime: first with the next poll in the same request (RESULT_NEXT),
   * whose answer's `next` is returned; a retry (the runtime's outbox) is the result alone.
   */
  private async report(cmd: { id: number; leaseId: string }): Promise<PollAnswer | undefined> {
    for (let i = 0; i < 30 && !stopped; i++) {
      try {
        const next = RESULT_NEXT && i === 0;
        const path = `/v1/agent/commands/${cmd.id}/result${next ? `?next=${cfg.pollWaitSeconds}` : ''}`;
        stats.resultRequests++;
        const r = await this.request('POST', path, { leaseId: cmd.leaseId, outcome: 'succeeded', outputs: { bench: true } }, next ? (cfg.pollWaitSeconds + 15) * 1000 : 15_000);
        if (r.status === 200) {
          stats.resultsOk++;
          resultDone.push({ id: cmd.id, at: nowMs() });
          const given = (r.json as { next?: PollAnswer } | undefined)?.next;
          if (given) stats.resultNext++;
          return given;
        }
        if (r.status >= 400 && r.status < 500) {
          stats.resultsErr++;
          errors[`result_${r.status}`] = (errors[`result_${r.status}`] ?? 0) + 1;
          return undefined;
        }
      } catch (err) {
        count(err);
      }
      await sleep(Math.min(10_000, 500 * 2 ** i));
    }
    stats.resultsErr++;
    return undefined;
  }
}

function count(err: unknown): void {
  const e = err as NodeJS.ErrnoException;
  const k = e?.code ?? e?.message ?? 'error';
  errors[k] = (errors[k] ?? 0) + 1;
}

const metricsBody = {
  cpuPercent: 3.2,
  memoryTotalBytes: 8_340_000_000,
  memoryUsedBytes: 2_110_000_000,
  diskTotalBytes: 100_000_000_000,
  diskUsedBytes: 31_000_000_000,
  load: [0.12, 0.2, 0.18],
  uptimeSeconds: 86_400,
  rssBytes: 48_000_000,
};
/**
 * As the runtime sends them: everything on the first beat and once a minute, otherwise only the
 * metrics that move between two beats (CPU, memory used, load, uptime, RSS).
 */
const heartbeatBody = (n: number) => {
  const uptimeSeconds = Math.round(process.uptime()) + 86_400;
  if (n % 12 === 0) return { version: '0.1.0', metrics: { ...metricsBody, uptimeSeconds }, running: [] };
  const wobble = (n % 7) / 100;
  return { metrics: { cpuPercent: 3.2 + wobble, memoryUsedBytes: 2_110_000_000 + n * 4096, load: [0.12 + wobble, 0.2, 0.18], uptimeSeconds, rssBytes: 48_000_000 + n * 1024 }, running: [] };
};

let agents: SimAgent[] = [];

function snapshot(reset: boolean): LoadgenStats {
  const s: LoadgenStats = {
    type: 'stats',
    agents: agents.length,
    healthy: agents.filter((a) => a.healthy).length,
    connected: agents.filter((a) => a.connected).length,
    ...stats,
    hbLatency: [...hbLat.values],
    claims,
    resultDone,
    recoveredHb: agents.filter((a) => a.recHb >= 0).map((a) => a.recHb),
    recoveredPoll: agents.filter((a) => a.recPoll >= 0).map((a) => a.recPoll),
    tlsConnects: agents.reduce((n, a) => n + a.client.stats.connects, 0),
    tlsResumed: agents.reduce((n, a) => n + a.client.stats.resumed, 0),
    retryAfterWaits,
    errors: { ...errors },
  };
  claims = [];
  resultDone = [];
  if (reset) {
    hbLat.values.length = 0;
    hbLat.seen = 0;
    for (const k of Object.keys(stats) as (keyof typeof stats)[]) stats[k] = 0;
    for (const k of Object.keys(errors)) delete errors[k];
    retryAfterWaits = 0;
  }
  return s;
}

process.on('message', (m: ParentMessage) => {
  if (m.type === 'start') {
    cfg = m;
    const ids = loadIdentities(m.identityDir);
    const keys = loadKeys(m.identityDir);
    for (let i = m.from; i < m.to; i++) {
      const id = ids.get(i);
      if (!id) throw new Error(`identity ${i} missing in ${join(m.identityDir, 'agents.jsonl')}`);
      agents.push(new SimAgent(id, keys[id.key]!.privateKeyPem, i));
    }
    for (const a of agents) a.start(Math.random() * m.rampMs);
    process.send!({ type: 'started' });
  } else if (m.type === 'report') {
    process.send!(snapshot(m.reset ?? false));
  } else if (m.type === 'mark') {
    markAt = nowMs();
    for (const a of agents) {
      a.recHb = -1;
      a.recPoll = -1;
    }
    process.send!({ type: 'marked' });
  } else if (m.type === 'stop') {
    stopped = true;
    for (const a of agents) a.stop();
    agents = [];
    setTimeout(() => process.exit(0), 200);
  }
});
process.on('disconnect', () => process.exit(0));
