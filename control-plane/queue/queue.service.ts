/**
 * The command queue: submission, long-poll claims, heartbeats and leases, fenced results,
 * cancellation and logs. SQL stays in ../db; this layer decides and wakes.
 */
import { EventEmitter } from 'node:events';
import { randomFillSync } from 'node:crypto';
import { TetherError, badRequest, conflict, forbidden, notFound } from '../../common/errors.ts';
import { isNodeCommandType, parseSpec, type CommandType } from '../../common/specs.ts';
import { page } from '../pagination.ts';
import {
  isTerminal,
  type CommandState,
  type CommandView,
  type HeartbeatBody,
  type HeartbeatResponse,
  type LogLine,
  type PollResponse,
  type ResultRequest,
  type SubmitCommand,
} from '../../common/wire.ts';
import type { Clock } from '../../common/clock.ts';
import type { Logger } from '../../common/logger.ts';
import { iso } from '../../common/clock.ts';
import { isPostgres, type Db } from '../db/database.ts';
import { claimNext } from '../db/claim.ts';
import * as commands from '../db/commands.repository.ts';
import { getCluster } from '../db/accounts.repository.ts';
import { findActiveNode, recordHeartbeat } from '../db/agents.repository.ts';
import { appendLogs, readLogs } from '../db/logs.repository.ts';
import type { CommandRow } from '../db/commands.repository.ts';
import type { Config } from '../config.ts';
import type { Metrics } from '../metrics.ts';
import type { Durability } from '../db/durability.ts';
import { Dispatcher, type HoldSignal } from './dispatcher.ts';
import { drainRetryAfterSeconds } from './drain.plan.ts';
import { redactText } from './redact.ts';
import { LogQuota, type LogRate } from './log-quota.ts';

/** What a log line costs the quota beyond its text (its row, index entry, timestamp and stream). */
const LOG_LINE_OVERHEAD_BYTES = 32;

/** Who is calling, as established from its verified client certificate. */
export interface AgentPrincipal {
  agentId: string;
  aid: string;
  cid: string;
  role: 'node' | 'cluster-agent';
  nid: string | null;
}

/** Emitted as 'ended' on QueueService.events when a command reached a terminal state. */
export interface CommandEnded {
  aid: string;
  id: number;
  state: CommandState;
  /** The command's type: a listener can pass over types it has no use for without a lookup. */
  type: CommandType;
}

export type CommandEvent = { kind: 'log'; id: number; ts: number; stream: string; text: string } | { kind: 'state'; state: CommandState };

export interface QueueDeps {
  db: Db;
  clock: Clock;
  config: Config;
  dispatcher: Dispatcher;
  metrics: Metrics;
  log: Logger;
  /**
   * The claim is answered once it is on disk (a poll whose agent left meanwhile gives it back), and
   * a heartbeat that extends leases or lists cancellations once they are.
   */
  durability?: Durability;
  /** The per-agent log rate; default in this process (LogQuota), shared across replicas on PostgreSQL. */
  logRate?: LogRate;
}

export class QueueService {
  readonly events = new EventEmitter();
  private readonly d: QueueDeps;
  /**
   * For the per-command info lines (queued, claimed, result applied), whose fields are ids, types
   * and states only, never a secret: pino's redaction (~4 µs a line) is skipped for them. Every
   * other line goes through the redacting logger.
   */
  private readonly hotLog: Logger;

  private readonly logQuota: LogRate;

  constructor(deps: QueueDeps) {
    this.d = deps;
    this.logQuota = deps.logRate ?? new LogQuota(deps.config.logBytesPerAgentPerSecond);
    this.events.setMaxListeners(0);
    this.hotLog = deps.log.child({}, { redact: { paths: [] } });
  }

  // ------------------------------------------------------------------ users

  async submit(aid: string, input: SubmitCommand): Promise<{ command: CommandView; created: boolean }> {
    const { db, clock, config } = this.d;
    const nodeType = isNodeCommandType(input.type);
    if (nodeType && !input.target.node) throw badRequest(`a ${input.type} command targets a node: set target.node`);
    if (!nodeType && input.target.node) throw badRequest(`a ${input.type} command targets a cluster: remove target.node`);
    const spec = parseSpec(input.type, input.spec);
    if (!spec.success) throw badRequest(`invalid ${input.type} spec: ${formatIssues(spec.error.issues)}`, 'invalid_spec');
    const noCluster = () => notFound(`cluster ${input.target.cluster} does not exist`, 'cluster_not_found');
    // The cluster is checked by the insert itself (its foreign key): no lookup before it. A node
    // target is looked up; when it is missing, the cluster decides which of the two 404s it is.
    if (input.target.node && !(await findActiveNode(db, aid, input.target.cluster, input.target.node))) {
      if (!(await getCluster(db, aid, input.target.cluster))) throw noCluster();
      throw notFound(`node ${input.target.node} is not registered in cluster ${input.target.cluster}`, 'node_not_found');
    }
    const specJson = JSON.stringify(spec.data);
    const inserted = await commands.insertCommand(db, {
      aid,
      cid: input.target.cluster,
      nid: input.target.node ?? null,
      type: input.type,
      spec: specJson,
      idempotencyKey: input.idempotencyKey ?? null,
      timeoutSeconds: input.timeoutSeconds ?? config.defaultTimeoutSeconds,
      maxAttempts: input.maxAttempts ?? config.defaultMaxAttempts,
      now: clock.now(),
    }).catch((err: unknown) => {
      throw err instanceof commands.ClusterNotFound ? noCluster() : err;
    });
    const { row, created } = inserted;
    // An existing command with this key answers for its own cluster, which exists (clusters are
    // never deleted); one with another cluster answers only when the named one exists too (404 as before).
    if (!created && row.cid !== input.target.cluster && !(await getCluster(db, aid, input.target.cluster))) throw noCluster();
    if (created) {
      const woke = this.d.dispatcher.notify(Dispatcher.key(row.aid, row.cid, row.nid));
      this.hotLog.info({ commandId: row.id, type: row.type, cid: row.cid, nid: row.nid }, 'command queued');
      // A held poll was woken for it: let its claim commit before this submission's answer asks
      // for its sync (durableAcks), so that the one WAL sync covers both. Without the turn the
      // submission's sync starts first, the claim's write misses it, and the claim waits for a
      // second sync behind it: two fsyncs between submit and claim instead of one (group commit
      // only; where a commit is durable itself there is nothing to share).
      if (woke && this.d.durability?.method === 'group-commit') await new Promise<void>((r) => setImmediate(r));
    }
    // A new row's spec is the one just validated: no need to parse it back.
    return { command: toView(row, created && row.spec === specJson ? spec.data : undefined), created };
  }

  async get(aid: string, id: number): Promise<CommandView> {
    const row = await commands.getCommand(this.d.db, aid, id);
    if (!row) throw notFound(`job ${id} does not exist`, 'job_not_found');
    return toView(row);
  }

  /** The newest jobs first, without their outputs (those are in the single-job view, get()). */
  /** A page of an account's commands, newest first; nextCursor (the last id) when there are more. */
  async list(aid: string, f: { cid?: string; state?: CommandState; type?: CommandType; limit?: number; beforeId?: number }): Promise<{ commands: CommandSummary[]; nextCursor: string | null }> {
    const limit = Math.min(f.limit ?? 100, LIST_LIMIT_MAX);
    const rows = await commands.listCommands(this.d.db, aid, { ...f, limit: limit + 1 });
    const p = page(rows, limit, (r) => [r.id], toSummary);
    return { commands: p.items, nextCursor: p.nextCursor };
  }

  async cancel(aid: string, id: number): Promise<CommandView> {
    const row = await commands.requestCancel(this.d.db, aid, id, this.d.clock.now());
    if (!row) throw notFound(`job ${id} does not exist`, 'job_not_found');
    if (row.state === 'cancelled' && row.claimed_by === null) this.emitState(row);
    if (row.state === 'running' && row.claimed_by) this.d.dispatcher.notifyAgent(row.claimed_by);
    this.d.log.info({ commandId: id, state: row.state }, 'cancellation requested');
    return toView(row);
  }

  async logs(aid: string, id: number, afterId: number, limit = 1000) {
    await this.get(aid, id);
    return readLogs(this.d.db, id, afterId, limit);
  }

  // ------------------------------------------------------------------ agents

  /**
   * Long-poll: claims the oldest queued command of the agent's target, or holds the request until
   * one is queued (woken in-process), the agent has a cancellation to learn of, or `waitMs` passes.
   */
  async poll(agent: AgentPrincipal, waitMs: number, signal: HoldSignal): Promise<PollResponse> {
    const key = Dispatcher.key(agent.aid, agent.cid, agent.role === 'node' ? agent.nid : null);
    const deadline = Date.now() + waitMs;
    for (;;) {
      const claimed = await this.tryClaim(agent, key);
      if (claimed) {
        const durable = this.d.durability?.barrier();
        if (durable) await durable;
        if (signal.aborted) {
          // The client left between the wake-up and the claim: give the command straight back.
          await this.release(claimed);
          this.d.dispatcher.notify(key);
          return { command: null, cancel: [] };
        }
        return { command: claimed.command, cancel: await commands.cancelRequestedFor(this.d.db, agent.agentId) };
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0 || signal.aborted) return { command: null, cancel: await commands.cancelRequestedFor(this.d.db, agent.agentId) };
      const reason = await this.d.dispatcher.wait(key, agent.agentId, remaining, signal);
      if (reason === 'revoked') throw forbidden('the client certificate has been revoked', 'certificate_revoked');
      if (reason === 'draining') throw draining(drainRetryAfterSeconds(this.d.dispatcher.drainSpreadSeconds, Math.random()));
      if (reason === 'aborted' || reason === 'timeout') return { command: null, cancel: reason === 'timeout' ? await commands.cancelRequestedFor(this.d.db, agent.agentId) : [] };
      if (reason === 'agent') return { command: null, cancel: await commands.cancelRequestedFor(this.d.db, agent.agentId) };
      // 'work' (or 'sweep': a wake-up from another replica may have been lost): loop and claim;
      // if another waiter won the race we wait again.
    }
  }

  private async tryClaim(agent: AgentPrincipal, key: string) {
    const now = this.d.clock.now();
    // Nothing was queued for this target since this process's last pick found none (dispatcher.ts
    // knownEmpty: why that is safe): the idle agent's re-poll skips the statement.
    const { dispatcher } = this.d;
    if (dispatcher.knownEmpty(key, now)) return undefined;
    const wakeUps = dispatcher.wakeUpCount;
    const row = await claimNext(
      this.d.db,
      { aid: agent.aid, cid: agent.cid, nid: agent.role === 'node' ? agent.nid : null },
      // Drawn only when there is a command to claim (most polls find none).
      { agentId: agent.agentId, leaseId: newLeaseId, leaseExpiresAt: now + this.d.config.leaseSeconds * 1000, now },
    );
    if (!row) {
      // SQLite only: PostgreSQL's claim skips rows another claim has locked (and may give back).
      if (!isPostgres(this.d.db)) dispatcher.markEmpty(key, agent.agentId, wakeUps, now);
      return undefined;
    }
    const leaseId = row.lease_id!;
    this.d.metrics.submitToClaim.observe(Math.max(0, now - row.created_at) / 1000);
    this.hotLog.info({ commandId: row.id, agentId: agent.agentId, attempt: row.attempts }, 'command claimed');
    this.emitState(row);
    return {
      row,
      command: {
        id: row.id,
        type: row.type,
        spec: JSON.parse(row.spec) as unknown,
        leaseId,
        leaseExpiresAt: iso(row.lease_expires_at)!,
        timeoutSeconds: row.timeout_seconds,
        attempt: row.attempts,
        maxAttempts: row.max_attempts,
      },
    };
  }

  /** Undoes a claim whose response could not be delivered (the attempt is not counted). */
  private async release(claimed: { row: CommandRow; command: { leaseId: string } }) {
    await commands.releaseClaim(this.d.db, claimed.row.id, claimed.command.leaseId);
  }

  async heartbeat(agent: AgentPrincipal, hb: HeartbeatBody): Promise<HeartbeatResponse> {
    const { db, clock, config } = this.d;
    const now = clock.now();
    // Only what changed since the agent's last acknowledged beat (see heartbeatRequestSchema).
    await recordHeartbeat(db, agent.agentId, {
      now,
      version: hb.version ?? null,
      metrics: hb.metrics ?? null,
      vpn: hb.vpn ? JSON.stringify(hb.vpn) : null,
    });
    await commands.extendLeases(db, agent.agentId, hb.running, now + config.leaseSeconds * 1000, config.timeoutGraceSeconds * 1000);
    this.d.metrics.heartbeats.inc();
    const cancel = await commands.cancelRequestedFor(db, agent.agentId);
    // The agent's row is outside the durability barrier (db/durability.ts): a beat that only says
    // "alive" is answered without waiting for a sync. Lease extensions are covered (a lost one
    // would let a running command be handed out again after a power cut), and so is a cancellation
    // the answer tells of: such a beat waits like any acknowledgment.
    if (hb.running.length > 0 || cancel.length > 0) {
      const durable = this.d.durability?.barrier();
      if (durable) await durable;
    }
    return { cancel };
  }

  /** A command the agent may report on: same account and cluster, and its own node's or the cluster's. */
  private async commandInScope(agent: AgentPrincipal, id: number): Promise<CommandRow> {
    const row = await commands.getCommandById(this.d.db, id);
    const inScope =
      row && row.aid === agent.aid && row.cid === agent.cid && (agent.role === 'node' ? row.nid === agent.nid : row.nid === null);
    // Another tenant's command is indistinguishable from a missing one.
    if (!row || !inScope) throw notFound(`job ${id} does not exist`, 'job_not_found');
    return row;
  }

  async report(agent: AgentPrincipal, id: number, r: ResultRequest): Promise<{ status: 'applied' | 'duplicate'; state: CommandState }> {
    const outputs = r.outputs ? JSON.stringify(r.outputs) : null;
    if (outputs !== null && Buffer.byteLength(outputs) > this.d.config.outputsLimitBytes) {
      throw new TetherError(
        'outputs_too_large',
        `outputs is ${Buffer.byteLength(outputs)} bytes of JSON; at most ${this.d.config.outputsLimitBytes} are stored (keep large data in the cluster)`,
        { status: 413 },
      );
    }
    // The fenced update comes first: it matches only the attempt this agent claimed, and an agent
    // claims only commands in its scope, so an applied result needs no lookup before it. Anything
    // else (missing, another tenant's, duplicate, stale) is told apart below, as before.
    const now = this.d.clock.now();
    const error = r.error ? JSON.stringify({ ...r.error, message: redactText(r.error.message) }) : null;
    const completion: commands.Completion =
      r.outcome === 'failed' && r.error?.retryable
        ? { kind: 'retry', error: error!, outputs: r.outputs ? JSON.stringify(r.outputs) : null }
        : {
            kind: 'final',
            state: r.outcome,
            outputs,
            error: r.outcome === 'succeeded' ? null : (error ?? JSON.stringify({ code: r.outcome, message: r.outcome, retryable: false })),
          };
    const updated = await commands.completeAttempt(this.d.db, { id, agentId: agent.agentId, leaseId: r.leaseId, now }, completion);
    if (updated) {
      this.emitState(updated);
      if (updated.state === 'queued') this.d.dispatcher.notify(Dispatcher.key(updated.aid, updated.cid, updated.nid));
      this.hotLog.info({ commandId: id, agentId: agent.agentId, state: updated.state }, 'result applied');
      return { status: 'applied', state: updated.state };
    }
    const row = await this.commandInScope(agent, id);
    if (row.lease_id === r.leaseId && row.claimed_by === agent.agentId && isTerminal(row.state)) {
      return { status: 'duplicate', state: row.state };
    }
    this.d.log.warn({ commandId: id, agentId: agent.agentId, state: row.state }, 'stale result refused');
    throw conflict(`the lease for job ${id} is no longer held by this attempt (state ${row.state})`, 'stale_lease');
  }

  /**
   * Stores an agent's log lines for the attempt it holds: rate-limited per agent (bytes/s, 429)
   * before any lookup, and capped per command (logs.repository.ts: past the cap the log ends with
   * one marker line). Returns how many lines were stored.
   */
  async appendLogs(agent: AgentPrincipal, id: number, leaseId: string, lines: LogLine[]): Promise<number> {
    let bytes = 0;
    for (const l of lines) bytes += Buffer.byteLength(l.text) + LOG_LINE_OVERHEAD_BYTES;
    await this.logQuota.take(agent.agentId, bytes);
    const row = await this.commandInScope(agent, id);
    if (row.lease_id !== leaseId || row.claimed_by !== agent.agentId) {
      throw conflict(`the lease for job ${id} is no longer held by this attempt`, 'stale_lease');
    }
    const now = this.d.clock.now();
    const stored = await appendLogs(
      this.d.db,
      id,
      lines.map((l) => ({ ts: l.ts ? Date.parse(l.ts) || now : now, stream: l.stream, text: redactText(l.text) })),
      this.d.config.logBytesPerCommand,
    );
    for (const l of stored) this.events.emit(`cmd:${id}`, { kind: 'log', ...l } satisfies CommandEvent);
    if (stored.length) this.d.dispatcher.commandChanged(id, stored[0]!.id);
    return stored.length;
  }

  /** Ends attempts whose lease expired (requeue, fail, time out or cancel); returns how many. */
  async reapExpired(): Promise<number> {
    const rows = await commands.expireLeases(this.d.db, this.d.clock.now());
    for (const row of rows) {
      this.emitState(row);
      this.d.log.warn({ commandId: row.id, state: row.state }, 'lease expired');
      if (row.state === 'queued') this.d.dispatcher.notify(Dispatcher.key(row.aid, row.cid, row.nid));
    }
    return rows.length;
  }

  private emitState(row: Pick<CommandRow, 'id' | 'aid' | 'state' | 'type'>) {
    this.events.emit(`cmd:${row.id}`, { kind: 'state', state: row.state } satisfies CommandEvent);
    this.d.dispatcher.commandChanged(row.id);
    // Every place a command reaches a terminal state comes through here (result, lease expiry,
    // cancellation): listeners such as the drift scheduler record what ended at once.
    if (isTerminal(row.state)) this.events.emit('ended', { aid: row.aid, id: row.id, state: row.state, type: row.type } satisfies CommandEnded);
  }
}

/** A 503 that says when to come back (`Retry-After`, whole seconds). */
export class RetryLater extends TetherError {
  readonly retryAfterSeconds: number;
  constructor(code: string, message: string, retryAfterSeconds: number) {
    super(code, message, { status: 503, retryable: true });
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/**
 * A held poll answered because this replica is shutting down: the agent retries elsewhere, or
 * here after `Retry-After` (spread over the agents the drain held: drain.plan.ts).
 */
export function draining(retryAfterSeconds = 1): RetryLater {
  return new RetryLater('draining', 'this control-plane replica is shutting down; retry on another (or on this one once restarted)', retryAfterSeconds);
}

/**
 * Lease ids (fencing tokens): 96 random bits each, drawn from a pooled buffer of the CSPRNG
 * (one randomFillSync per 256 ids instead of one per claim).
 */
const leasePool = Buffer.alloc(12 * 256);
let leasePoolAt = leasePool.length;
function newLeaseId(): string {
  if (leasePoolAt >= leasePool.length) {
    randomFillSync(leasePool);
    leasePoolAt = 0;
  }
  const id = leasePool.toString('base64url', leasePoolAt, leasePoolAt + 12);
  leasePoolAt += 12;
  return id;
}

/** The most jobs one list request returns (GET /v1/commands?limit=…). */
export const LIST_LIMIT_MAX = 200;

/** A job in a list: everything but its outputs. */
export type CommandSummary = Omit<CommandView, 'outputs'>;

export function toSummary(row: commands.CommandSummaryRow): CommandSummary {
  const { outputs: _omitted, ...rest } = toView({ ...row, outputs: null });
  return rest;
}

export function toView(row: CommandRow, spec?: unknown): CommandView {
  return {
    id: row.id,
    aid: row.aid,
    target: row.nid ? { cluster: row.cid, node: row.nid } : { cluster: row.cid },
    type: row.type,
    spec: spec ?? JSON.parse(row.spec),
    state: row.state,
    idempotencyKey: row.idempotency_key,
    timeoutSeconds: row.timeout_seconds,
    maxAttempts: row.max_attempts,
    attempts: row.attempts,
    claimedBy: row.claimed_by,
    outputs: row.outputs ? JSON.parse(row.outputs) : null,
    error: row.error ? JSON.parse(row.error) : null,
    cancelRequested: row.cancel_requested_at !== null,
    createdAt: iso(row.created_at)!,
    claimedAt: iso(row.claimed_at),
    finishedAt: iso(row.finished_at),
  };
}

export function formatIssues(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  return issues
    .slice(0, 10)
    .map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`)
    .join('; ');
}
