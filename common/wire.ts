/**
 * Wire schemas shared by the control plane, the agents and the CLI. The control plane parses
 * every request body with these; clients parse responses with them where a mistake would matter.
 */
import { z } from 'zod';
import { jsonValue } from './specs.ts';
import { COMMAND_TYPES, type CommandType } from './command-types.ts';
import { AGENT_ROLES, AID_RE, CID_RE, ID_MESSAGES, NID_RE, type AgentRole } from './agent-wire.ts';

// The answers agents parse are zod/mini schemas in agent-wire.ts (the node agent's idle daemon loads no classic zod).
export {
  AGENT_ROLES,
  bootstrapResponseSchema,
  claimedCommandSchema,
  heartbeatResponseSchema,
  pollResponseSchema,
  renewResponseSchema,
  resultResponseSchema,
  type AgentRole,
  type BootstrapResponse,
  type ClaimedCommand,
  type HeartbeatResponse,
  type PollResponse,
  type ResultNextResponse,
  type ResultResponse,
} from './agent-wire.ts';
import { DURATION_RE, parseDurationSeconds } from './duration.ts';

export { AID_RE, CID_RE, NID_RE };

export const aidSchema = z.string().regex(AID_RE, ID_MESSAGES.aid);
export const cidSchema = z.string().regex(CID_RE, ID_MESSAGES.cid);
export const nidSchema = z.string().regex(NID_RE, ID_MESSAGES.nid);

export const COMMAND_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'] as const;
export type CommandState = (typeof COMMAND_STATES)[number];
export const TERMINAL_STATES: readonly CommandState[] = ['succeeded', 'failed', 'cancelled', 'timed_out'];
export const isTerminal = (s: CommandState) => TERMINAL_STATES.includes(s);

// ---------------------------------------------------------------- admin API

export const submitCommandSchema = z
  .object({
    target: z.object({ cluster: cidSchema, node: nidSchema.optional() }).strict(),
    type: z.enum(COMMAND_TYPES),
    spec: jsonValue,
    idempotencyKey: z.string().min(1).max(128).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces').optional(),
    timeoutSeconds: z.number().int().min(1).max(86_400).optional(),
    maxAttempts: z.number().int().min(1).max(20).optional(),
  })
  .strict();
export type SubmitCommand = z.infer<typeof submitCommandSchema>;

export const createClusterSchema = z
  .object({ cid: cidSchema, domainRoot: z.string().min(1).max(200).regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a DNS name').optional() })
  .strict();

export const durationSchema = z.string().regex(DURATION_RE, 'a duration like 30s, 15m, 1h or 7d');
export { parseDurationSeconds };

export const createBootstrapTokenSchema = z
  .object({
    cluster: cidSchema,
    role: z.enum(AGENT_ROLES),
    controlPlane: z.boolean().optional(),
    ttlSeconds: z.number().int().min(60).max(7 * 86400).optional(),
  })
  .strict();

export const createApiTokenSchema = z
  .object({ name: z.string().min(1).max(100), ttlSeconds: z.number().int().min(60).max(400 * 86400).optional() })
  .strict();

// ---------------------------------------------------------------- bootstrap (one-way TLS)

export const bootstrapRequestSchema = z
  .object({
    token: z.string().min(1).max(200),
    csr: z.string().min(1).max(16 * 1024),
    aid: aidSchema.optional(),
    controlPlane: z.boolean().optional(),
    nodeName: nidSchema.optional(),
  })
  .strict();
export type BootstrapRequest = z.infer<typeof bootstrapRequestSchema>;


// ---------------------------------------------------------------- agent API (mTLS)

export const renewRequestSchema = z.object({ csr: z.string().min(1).max(16 * 1024) }).strict();

export const metricsSchema = z
  .object({
    cpuPercent: z.number().min(0).max(100_000).optional(),
    memoryTotalBytes: z.number().min(0).optional(),
    memoryUsedBytes: z.number().min(0).optional(),
    diskTotalBytes: z.number().min(0).optional(),
    diskUsedBytes: z.number().min(0).optional(),
    load: z.array(z.number()).max(3).optional(),
    uptimeSeconds: z.number().min(0).optional(),
    rssBytes: z.number().min(0).optional(),
  })
  .strict();
export type AgentMetrics = z.infer<typeof metricsSchema>;

/**
 * A heartbeat says what changed since the last one the control plane acknowledged: `version`
 * and `vpn` when they differ, only the `metrics` fields that differ (merged into the stored
 * ones), and the commands running (their leases are extended; absent = none). Agents send
 * everything after each (re)connect and at least every 10 minutes, so state a control plane lost
 * in a crash (its last heartbeat batch) heals itself.
 */
export const heartbeatRequestSchema = z
  .object({
    version: z.string().max(64).optional(),
    metrics: metricsSchema.optional(),
    running: z.array(z.number().int()).max(1000).default([]),
    vpn: z.record(z.string(), jsonValue).optional(),
  })
  .strict();
/** What an agent sends (fields with defaults may be left out). */
export type HeartbeatRequest = z.input<typeof heartbeatRequestSchema>;
/** What the control plane works with once the request is parsed. */
export type HeartbeatBody = z.output<typeof heartbeatRequestSchema>;

export const OUTCOMES = ['succeeded', 'failed', 'cancelled', 'timed_out'] as const;
export type OutcomeStatus = (typeof OUTCOMES)[number];

export const commandErrorSchema = z
  .object({ code: z.string().min(1).max(100), message: z.string().max(16 * 1024), retryable: z.boolean().default(false) })
  .strict();
export type CommandError = z.infer<typeof commandErrorSchema>;

export const resultRequestSchema = z
  .object({
    leaseId: z.string().min(1).max(64),
    outcome: z.enum(OUTCOMES),
    outputs: z.record(z.string().max(253), jsonValue).optional(),
    error: commandErrorSchema.optional(),
  })
  .strict();
export type ResultRequest = z.infer<typeof resultRequestSchema>;

export const LOG_STREAMS = ['stdout', 'stderr', 'system'] as const;
export const logLineSchema = z
  .object({ ts: z.string().max(40).optional(), stream: z.enum(LOG_STREAMS).default('system'), text: z.string().max(16 * 1024) })
  .strict();
export type LogLine = z.infer<typeof logLineSchema>;
export const logsRequestSchema = z.object({ leaseId: z.string().min(1).max(64), lines: z.array(logLineSchema).min(1).max(1000) }).strict();

// ---------------------------------------------------------------- views returned to users

export interface CommandView {
  id: number;
  aid: string;
  target: { cluster: string; node?: string };
  type: CommandType;
  spec: unknown;
  state: CommandState;
  idempotencyKey: string | null;
  timeoutSeconds: number;
  maxAttempts: number;
  attempts: number;
  claimedBy: string | null;
  outputs: Record<string, unknown> | null;
  error: CommandError | null;
  cancelRequested: boolean;
  createdAt: string;
  claimedAt: string | null;
  finishedAt: string | null;
}

export type AgentStatus = 'healthy' | 'degraded' | 'offline';

export interface AgentView {
  id: string;
  aid: string;
  cid: string;
  role: AgentRole;
  nid: string | null;
  controlPlane: boolean;
  status: AgentStatus;
  revoked: boolean;
  lastHeartbeatAt: string | null;
  secondsSinceHeartbeat: number | null;
  version: string | null;
  metrics: AgentMetrics | null;
  vpn: Record<string, unknown> | null;
  createdAt: string;
}

/** Liveness thresholds (seconds since the last heartbeat). */
export const HEALTHY_BELOW_S = 10;
export const OFFLINE_FROM_S = 30;

export function agentStatus(lastHeartbeatMs: number | null, nowMs: number): AgentStatus {
  if (lastHeartbeatMs === null) return 'offline';
  const age = (nowMs - lastHeartbeatMs) / 1000;
  if (age < HEALTHY_BELOW_S) return 'healthy';
  if (age < OFFLINE_FROM_S) return 'degraded';
  return 'offline';
}
