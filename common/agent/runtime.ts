/**
 * The agents' consumer loop, shared by the cluster agent and the node agent: long-poll for work,
 * run it with an AbortSignal per execution, heartbeat every 5 s, ship logs, and deliver results
 * through an on-disk outbox. Every error is logged and retried with backoff (1 s doubling to
 * 60 s, jittered; heartbeats from their interval after two failures in a row), or after the
 * control plane's Retry-After when it gave one (bounded, jittered: retry.plan.ts); nothing here
 * ends the process.
 *
 * The executor never sees the wire: it gets the claimed command and a context, and returns an
 * outcome (succeeded | failed{code} | cancelled | timed_out); whether a failure is retryable
 * follows from its code (COMMAND_ERRORS in common/errors.ts).
 */
import pRetry from 'p-retry';
import type { Logger } from '../logger.ts';
import { TetherError, classifyFailure, errorMessage } from '../errors.ts';
import type { AgentMetrics, ClaimedCommand, PollResponse } from '../wire.ts';
import { LONG_POLL_SECONDS } from '../agent-wire.ts';
import type { AgentClient } from './agent-client.ts';
import { MemoryOutbox, type Outbox, type OutboxEntry } from './outbox.ts';
import { Masker } from './masker.ts';
import { heartbeatDelay, retryDelay } from './retry.plan.ts';
import { LogShipper } from './log-shipper.ts';
import { StopReason, fromStopReason, toResult, type ExecutionContext, type Executor, type Outcome } from './outcome.ts';

export { StopReason, type ExecutionContext, type Executor, type Outcome };

export interface RuntimeOptions {
  client: AgentClient;
  execute: Executor;
  log: Logger;
  version: string;
  collectMetrics: () => Promise<AgentMetrics> | AgentMetrics;
  /** Extra heartbeat payload (the node agent's VPN peer state). */
  collectVpn?: () => Promise<Record<string, unknown> | undefined>;
  concurrency?: number;
  heartbeatIntervalMs?: number;
  /** Every heartbeat field is sent at least this often, changed or not (default 10 min), and after each reconnect. */
  fullHeartbeatMs?: number;
  pollWaitSeconds?: number;
  /** How long running work may finish after a stop before it is cancelled. */
  shutdownGraceMs?: number;
  outbox?: Outbox;
  /**
   * The agent's one masking point; give the same one to the agent's log destination
   * (`createLogger(..., { mask })`) so its own log is masked too. Default: a new one.
   */
  masker?: Masker;
  /** Backoff bounds (defaults 1 s and 60 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

interface Running {
  command: ClaimedCommand;
  controller: AbortController;
  /** The execution ended; its result is in the outbox (the entry), or was reported directly (undefined). */
  done: Promise<OutboxEntry | undefined>;
}

export class AgentRuntime {
  private readonly o: Required<Omit<RuntimeOptions, 'collectVpn'>> & Pick<RuntimeOptions, 'collectVpn'>;
  private readonly running = new Map<number, Running>();
  private readonly stopping = new AbortController();
  private loops: Promise<void>[] = [];
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private lastHeartbeatOk = 0;

  constructor(opts: RuntimeOptions) {
    this.o = {
      concurrency: 1,
      heartbeatIntervalMs: 5000,
      fullHeartbeatMs: 600_000,
      pollWaitSeconds: LONG_POLL_SECONDS,
      shutdownGraceMs: 30_000,
      outbox: new MemoryOutbox(),
      masker: new Masker(),
      minBackoffMs: 1000,
      maxBackoffMs: 60_000,
      ...opts,
    };
  }

  /** Ids of the commands executing now. */
  get runningIds(): number[] {
    return [...this.running.keys()];
  }

  get lastHeartbeatAt(): number {
    return this.lastHeartbeatOk;
  }

  start(): void {
    void this.heartbeatOnce();
    this.heartbeatTimer = setInterval(() => void this.heartbeatOnce(), this.o.heartbeatIntervalMs);
    for (let i = 0; i < this.o.concurrency; i++) this.loops.push(this.pollLoop(i));
  }

  /** Stops polling, lets running work finish for the grace period, cancels the rest, reports. */
  async stop(graceMs = this.o.shutdownGraceMs): Promise<void> {
    if (this.stopping.signal.aborted) return;
    this.o.log.info({ running: this.runningIds, graceMs }, 'stopping: no new work');
    this.stopping.abort();
    const timer = setTimeout(() => {
      for (const r of this.running.values()) r.controller.abort(new StopReason('shutdown', 'the agent is shutting down'));
    }, graceMs);
    // Poll loops end once their current execution has finished (or been cancelled by the timer).
    await Promise.all(this.loops);
    await Promise.all([...this.running.values()].map((r) => r.done));
    clearTimeout(timer);
    await this.flushOutbox(5_000);
    clearInterval(this.heartbeatTimer);
    this.o.log.info('stopped');
  }

  // ------------------------------------------------------------------ polling

  private async pollLoop(slot: number): Promise<void> {
    const log = this.o.log.child({ slot });
    // The next command as the last result's answer gave it (reportNext): handled like a poll's answer.
    let next: PollResponse | undefined;
    // A command that answer claimed is run even if a stop came meanwhile (as a poll's would be).
    while (!this.stopping.signal.aborted || next?.command) {
      // The attempt the backoff counts from: a Retry-After waited out starts it again (the control
      // plane said when to come back; not being there yet then is a first failure, not the nth).
      let backoffFrom = 0;
      try {
        const given = next;
        next = undefined;
        const res = given ?? await pRetry(async () => {
          await this.flushOutbox(); // results first: a reconnect delivers what was produced while away
          return this.o.client.poll(this.o.pollWaitSeconds, this.stopping.signal);
        }, {
          retries: Number.POSITIVE_INFINITY,
          // p-retry counts the attempts; the backoff sleep is ours (below) so that it can end early.
          minTimeout: 0,
          signal: this.stopping.signal,
          onFailedAttempt: async ({ error, attemptNumber }) => {
            const level = error instanceof TetherError && !error.retryable ? 'error' : 'warn';
            // The control plane's Retry-After when it gave one (a drain spreads its agents' returns),
            // else 1 s doubling to 60 s, randomised (retry.plan.ts).
            const d = retryDelay({ attempt: attemptNumber - backoffFrom, retryAfterMs: await this.o.client.retryAfter(error), minBackoffMs: this.o.minBackoffMs, maxBackoffMs: this.o.maxBackoffMs, random: Math.random() });
            log[level]({ err: error, attempt: attemptNumber, retryInMs: d.ms, cause: d.cause }, 'poll failed; backing off');
            if (d.cause === 'retry_after') {
              backoffFrom = attemptNumber;
              await this.quiet(d.ms);
            } else await this.backoff(d.ms);
          },
        });
        this.cancel(res.cancel);
        if (res.command) {
          const r = this.startExecution(res.command);
          const entry = await r.done;
          // Its result, and the next command in the same request; without one, the poll above.
          next = await this.reportNext(entry);
        }
      } catch (err) {
        if (this.stopping.signal.aborted) break;
        log.error({ err }, 'poll loop error');
        await sleep(this.o.minBackoffMs, this.stopping.signal);
      }
    }
  }

  /** Aborted (and replaced) by every heartbeat that gets through: ends the poll loops' backoff sleeps. */
  private reachable = new AbortController();

  /**
   * Sleeps `ms`, or less: a heartbeat that gets through (the control plane is back) or a stop ends
   * it, so after a control-plane restart an agent polls again within a heartbeat interval instead
   * of sleeping out a backoff that grew while the control plane was down.
   */
  private backoff(ms: number): Promise<void> {
    return sleep(ms, AbortSignal.any([this.stopping.signal, this.reachable.signal]));
  }

  /** Until when the control plane asked not to be called (a Retry-After): heartbeats wait too. */
  private quietUntil = 0;

  /**
   * Waits out a Retry-After: nothing is sent before it ends (heartbeats are skipped meanwhile, so
   * none ends it early), only a stop ends it. The agents of a draining control plane come back
   * when it said, spread, rather than at their next heartbeat all at once.
   */
  private quiet(ms: number): Promise<void> {
    this.quietUntil = Math.max(this.quietUntil, Date.now() + ms);
    return sleep(Math.max(0, this.quietUntil - Date.now()), this.stopping.signal);
  }

  private cancel(ids: number[]): void {
    for (const id of ids) {
      const r = this.running.get(id);
      if (r && !r.controller.signal.aborted) {
        this.o.log.info({ commandId: id }, 'cancellation received');
        r.controller.abort(new StopReason('cancelled', 'cancelled by a user'));
      }
    }
  }

  // ------------------------------------------------------------------ executing

  private startExecution(command: ClaimedCommand): Running {
    const controller = new AbortController();
    const log = this.o.log.child({ commandId: command.id, type: command.type, attempt: command.attempt });
    const masker = this.o.masker;
    const secrets = masker.scope();
    const shipper = new LogShipper(this.o.client, command, masker, log);
    const timeout = setTimeout(
      () => controller.abort(new StopReason('timed_out', `the command exceeded its timeout of ${command.timeoutSeconds}s`)),
      command.timeoutSeconds * 1000,
    );
    const ctx: ExecutionContext = {
      commandId: command.id,
      attempt: command.attempt,
      signal: controller.signal,
      log,
      emit: (text, stream = 'system') => shipper.push(stream, text),
      mask: (v) => secrets.add(v),
    };
    log.info('executing');
    const done = (async () => {
      let outcome: Outcome;
      try {
        outcome = await this.o.execute(command, ctx);
      } catch (err) {
        outcome = { status: 'failed', error: { code: classifyFailure(err).code, message: errorMessage(err) } };
      }
      clearTimeout(timeout);
      if (controller.signal.aborted && outcome.status !== 'succeeded') outcome = fromStopReason(controller.signal.reason, outcome);
      log.info({ status: outcome.status }, 'finished');
      ctx.emit(`${outcome.status}${'error' in outcome ? `: ${outcome.error.code}: ${outcome.error.message}` : 'message' in outcome && outcome.message ? `: ${outcome.message}` : ''}`);
      await shipper.close();
      const result = toResult(command.leaseId, outcome, masker);
      let stored = true;
      try {
        await this.o.outbox.put({ commandId: command.id, result });
      } catch (err) {
        stored = false;
        // Without a durable outbox the result can still be delivered directly (and is lost only if that fails too).
        log.error({ err }, 'cannot store the result in the outbox; reporting it directly');
        await this.deliver({ commandId: command.id, result }).catch(() => undefined);
      }
      this.running.delete(command.id);
      secrets.close();
      return stored ? { commandId: command.id, result } : undefined;
    })();
    const r: Running = { command, controller, done };
    this.running.set(command.id, r);
    return r;
  }

  // ------------------------------------------------------------------ results

  private flushing: Promise<void> | undefined;

  /** Delivers stored results. A refusal (4xx: stale lease, unknown job) is final and drops the entry. */
  flushOutbox(timeoutMs?: number, except?: OutboxEntry): Promise<void> {
    if (!this.flushing) {
      this.flushing = this.deliverAll(timeoutMs, except).finally(() => {
        this.flushing = undefined;
      });
    }
    return this.flushing;
  }

  /** Every stored result but `except` (a slot's own, which it delivers with its next poll: reportNext). */
  private async deliverAll(timeoutMs?: number, except?: OutboxEntry): Promise<void> {
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    let entries: OutboxEntry[];
    try {
      entries = await this.o.outbox.list();
    } catch (err) {
      this.o.log.error({ err }, 'cannot read the outbox');
      return;
    }
    for (const entry of entries) {
      if (deadline !== undefined && Date.now() > deadline) return;
      if (except && entry.commandId === except.commandId && entry.result.leaseId === except.result.leaseId) continue;
      await this.deliver(entry);
    }
  }

  /**
   * A slot's own result, just put in the outbox: the other results waiting there go first (as
   * today), then this one with the next poll in the same request (`?next=`, one request per
   * command). Returns the answer's next command (a poll's answer), or undefined: stopping, a
   * control plane that does not know `next` (it answers without), or a failure, after which the
   * result stays in the outbox and the slot's next poll delivers it first, as before.
   */
  private async reportNext(entry: OutboxEntry | undefined): Promise<PollResponse | undefined> {
    if (!entry || this.stopping.signal.aborted) {
      await this.flushOutbox();
      return undefined;
    }
    await this.flushOutbox(undefined, entry);
    if (this.stopping.signal.aborted) return undefined;
    const r = await this.deliver(entry, this.o.pollWaitSeconds);
    return r?.next;
  }

  private async deliver(entry: OutboxEntry, nextWaitSeconds?: number): Promise<{ status: string; state: string; next?: PollResponse } | undefined> {
    try {
      const r = nextWaitSeconds === undefined
        ? await this.o.client.report(entry.commandId, entry.result)
        : await this.o.client.reportAndPoll(entry.commandId, entry.result, nextWaitSeconds, this.stopping.signal);
      this.o.log.info({ commandId: entry.commandId, outcome: entry.result.outcome, status: r.status, state: r.state }, 'result delivered');
      await this.o.outbox.remove(entry).catch((err: unknown) => this.o.log.error({ err }, 'cannot remove a delivered result from the outbox'));
      return r;
    } catch (err) {
      if (err instanceof TetherError && !err.retryable && err.status >= 400 && err.status < 500) {
        this.o.log.warn({ commandId: entry.commandId, err }, 'result refused by the control plane; dropping it');
        await this.o.outbox.remove(entry).catch(() => undefined);
      } else {
        this.o.log.warn({ commandId: entry.commandId, err }, 'result not delivered yet; kept in the outbox');
      }
      return undefined;
    }
  }

  // ------------------------------------------------------------------ heartbeats

  private heartbeating = false;
  /** What the control plane has acknowledged: heartbeats carry only what differs from it. */
  private acked: { metrics: Record<string, unknown>; vpn?: string; fullAt: number; connections: number } = { metrics: {}, fullAt: 0, connections: -1 };

  /** Heartbeats failed in a row without a Retry-After, and the time before which none goes (retry.plan.ts, heartbeatDelay). */
  private heartbeatFailures = 0;
  private heartbeatNotBefore = 0;

  private async heartbeatOnce(): Promise<void> {
    if (this.heartbeating || Date.now() < this.quietUntil || Date.now() < this.heartbeatNotBefore) return;
    this.heartbeating = true;
    try {
      const [metrics, vpn] = await Promise.all([this.o.collectMetrics(), this.o.collectVpn?.()]);
      // Everything, now and then and on every new connection: a control plane that restarted may
      // have lost the last acknowledged beats it had not written yet.
      const connections = this.o.client.connections;
      const full = Date.now() - this.acked.fullAt >= this.o.fullHeartbeatMs || connections !== this.acked.connections;
      const changed: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(metrics)) if (full || JSON.stringify(v) !== JSON.stringify(this.acked.metrics[k])) changed[k] = v;
      const vpnJson = vpn ? JSON.stringify(vpn) : undefined;
      const sendVpn = vpn !== undefined && (full || vpnJson !== this.acked.vpn);
      const running = this.runningIds;
      const res = await this.o.client.heartbeat({
        ...(running.length ? { running } : {}), // absent = nothing running
        ...(full ? { version: this.o.version } : {}), // constant for the process: full beats carry it
        ...(Object.keys(changed).length ? { metrics: changed } : {}),
        ...(sendVpn ? { vpn } : {}),
      });
      this.acked = {
        metrics: full ? { ...metrics } : { ...this.acked.metrics, ...changed },
        vpn: sendVpn ? vpnJson : this.acked.vpn,
        fullAt: full ? Date.now() : this.acked.fullAt,
        connections,
      };
      this.lastHeartbeatOk = Date.now();
      this.heartbeatFailures = 0;
      this.reachable.abort();
      this.reachable = new AbortController();
      this.cancel(res.cancel);
      void this.flushOutbox(); // the control plane is reachable: deliver anything still waiting
    } catch (err) {
      const retryAfterMs = await this.o.client.retryAfter(err);
      if (retryAfterMs !== undefined) {
        // The control plane answered: it said when, and the backoff starts again.
        this.heartbeatFailures = 0;
        this.quietUntil = Math.max(this.quietUntil, Date.now() + retryDelay({ attempt: 1, retryAfterMs, minBackoffMs: this.o.minBackoffMs, maxBackoffMs: this.o.maxBackoffMs, random: Math.random() }).ms);
        this.o.log.warn({ err, retryAfterMs }, 'heartbeat failed');
      } else {
        this.heartbeatFailures++;
        const backoffMs = heartbeatDelay({ failures: this.heartbeatFailures, intervalMs: this.o.heartbeatIntervalMs, maxBackoffMs: this.o.maxBackoffMs, random: Math.random() });
        this.heartbeatNotBefore = Date.now() + backoffMs;
        this.o.log.warn({ err, failures: this.heartbeatFailures, ...(backoffMs > 0 ? { backoffMs } : {}) }, 'heartbeat failed');
      }
    } finally {
      this.heartbeating = false;
    }
  }
}

/** Sleeps `ms`, or until `signal` aborts (its listener is removed either way). */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
