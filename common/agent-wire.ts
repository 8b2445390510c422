/**
 * The answers an agent parses (bootstrap, poll, heartbeat, renewal), in zod/mini so that the node
 * agent's idle daemon does not load classic zod and every request schema of common/wire.ts, which
 * re-exports these: the control plane and the OpenAPI document use the same objects.
 */
import * as z from './zod-mini.ts';
import { COMMAND_TYPES, type CommandType } from './command-types.ts';

/** Account, cluster and node ids, and what is wrong with one that does not match (wire.ts and the node agent's configuration). */
export const AID_RE = /^[a-z0-9]{5}$/;
export const CID_RE = /^[a-z0-9]{3,16}$/;
export const NID_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const ID_MESSAGES = {
  aid: 'an account id is 5 lowercase alphanumerics',
  cid: 'a cluster id is 3-16 lowercase alphanumerics',
  nid: 'a node id is a DNS label (lowercase alphanumerics and "-", at most 63)',
} as const;

export const AGENT_ROLES = ['node', 'cluster-agent'] as const;

/**
 * How long an idle poll is held, in seconds: what the agents ask (`wait`, `?next`) and the control
 * plane's bound (`--long-poll-seconds`), one number for both. 50 s halves an idle fleet's re-polls
 * against 25 s (docs/performance.md, 2026-12-02); an agent asking less is held less, and an older
 * control plane holds its own 25 s.
 */
export const LONG_POLL_SECONDS = 50;
export type AgentRole = (typeof AGENT_ROLES)[number];

export const bootstrapResponseSchema = z.object({
  agentId: z.string(),
  aid: z.string(),
  cid: z.string(),
  role: z.enum(AGENT_ROLES),
  nid: z.nullable(z.string()),
  controlPlane: z.boolean(),
  certificate: z.string(),
  caCertificate: z.string(),
  expiresAt: z.string(),
});
export type BootstrapResponse = z.infer<typeof bootstrapResponseSchema>;

export const renewResponseSchema = z.object({ certificate: z.string(), expiresAt: z.string() });

export const claimedCommandSchema = z.object({
  id: z.int(),
  type: z.enum(COMMAND_TYPES),
  spec: z.unknown(),
  leaseId: z.string(),
  leaseExpiresAt: z.string(),
  timeoutSeconds: z.int(),
  attempt: z.int(),
  maxAttempts: z.int(),
});
export type ClaimedCommand = z.infer<typeof claimedCommandSchema> & { type: CommandType };

export const pollResponseSchema = z.object({ command: z.nullable(claimedCommandSchema), cancel: z.array(z.int()) });
export type PollResponse = z.infer<typeof pollResponseSchema>;

export const heartbeatResponseSchema = z.object({ cancel: z.array(z.int()), serverTime: z.optional(z.string()) });
export type HeartbeatResponse = z.infer<typeof heartbeatResponseSchema>;

/**
 * The answer to a result (POST /v1/agent/commands/{id}/result): `applied`, or `duplicate` for a
 * result already stored for this attempt, and the command's state after it. With `?next=N`, also
 * `next`: what GET /v1/agent/poll?wait=N would have answered (the next command claimed, or none
 * after up to N s; cancellations to act on). A control plane without `next` answers without it.
 */
export const resultResponseSchema = z.object({
  status: z.enum(['applied', 'duplicate']),
  state: z.string(),
  next: z.optional(pollResponseSchema),
});
export type ResultResponse = z.infer<typeof resultResponseSchema>;
/** The answer with `?next=N`: `next` always present. */
export type ResultNextResponse = ResultResponse & { next: PollResponse };
