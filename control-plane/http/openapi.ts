/**
 * The REST API's route table and the OpenAPI 3.1 document generated from it (issue 17). Request
 * bodies, path parameters and queries are the zod schemas the routes validate with, turned into
 * JSON Schema by zod 4 (`z.toJSONSchema`), so the document and the server cannot disagree; the
 * response views are described here. Served at GET /v1/openapi.json; docs/api.openapi.yaml is
 * this document as YAML, kept in sync by `npm run lint` (scripts/openapi.ts --check), which also
 * validates it with an OpenAPI validator. test/control-plane/contract.test.ts drives every
 * operation and checks every answer against it.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { AGENT_ROLES, COMMAND_STATES, bootstrapRequestSchema, bootstrapResponseSchema, cidSchema, createApiTokenSchema, createBootstrapTokenSchema, createClusterSchema, heartbeatRequestSchema, heartbeatResponseSchema, logsRequestSchema, pollResponseSchema, renewRequestSchema, renewResponseSchema, resultRequestSchema, resultResponseSchema, submitCommandSchema } from '../../common/wire.ts';
import { dnsLabel } from '../../common/specs.ts';
import { vpnConfigSchema, vpnRegisterSchema } from '../../common/vpn.ts';
import { deploySchema, desiredStateSchema, driftSettingsSchema, osidParam, redeploySchema, registerBundleSchema } from '../bundles/bundles.wire.ts';
import { createVpnUserSchema } from '../vpn/vpn.schemas.ts';
import { agentIdSchema, listAgentsQuery, listApiTokensQuery, listBootstrapTokensQuery, listCommandsQuery, logsQuery } from './admin.routes.ts';
import { pollQuery } from './agent.routes.ts';
import { resultNextQuery } from './result-next.ts';
import { deleteQuery, listInstancesQuery, versionParam, versionsQuery } from './bundles.routes.ts';
import { userId } from './vpn.routes.ts';
import { createSessionSchema } from './sessions.routes.ts';

/**
 * bearer: an account's API token, or the console's session cookie in its place; session: the
 * session cookie only; metrics: the metrics token (<data-dir>/metrics-token); mtls: an agent's certificate.
 */
export type Auth = 'bearer' | 'session' | 'metrics' | 'mtls' | 'none';

export interface RouteDoc {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** OpenAPI form: /v1/commands/{id}. */
  path: string;
  auth: Auth;
  /** Only agents of this role (mTLS routes). */
  role?: (typeof AGENT_ROLES)[number];
  summary: string;
  params?: Record<string, z.core.$ZodType>;
  query?: z.ZodObject;
  body?: z.core.$ZodType;
  /** Success statuses and what they return (undefined: no body). */
  ok: Record<number, z.core.$ZodType | undefined>;
  /** Error statuses this route can answer (besides those every route of its kind can). */
  errors: number[];
  /** Content types of the success answer other than JSON. */
  produces?: string;
}

// ------------------------------------------------------------------ views (responses)

const iso = z.string().describe('ISO 8601 time');
const commandError = z.looseObject({ code: z.string(), message: z.string(), retryable: z.boolean().optional() });
const commandView = z.looseObject({
  id: z.number().int(),
  aid: z.string(),
  target: z.looseObject({ cluster: z.string(), node: z.string().optional() }),
  type: z.string(),
  spec: z.unknown(),
  state: z.enum(COMMAND_STATES),
  idempotencyKey: z.string().nullable(),
  timeoutSeconds: z.number().int(),
  maxAttempts: z.number().int(),
  attempts: z.number().int(),
  claimedBy: z.string().nullable(),
  outputs: z.record(z.string(), z.unknown()).nullable(),
  error: commandError.nullable(),
  cancelRequested: z.boolean(),
  createdAt: iso,
  claimedAt: iso.nullable(),
  finishedAt: iso.nullable(),
});
/** A command in a list: everything but its outputs. */
const commandListView = commandView.omit({ outputs: true });
const agentView = z.looseObject({
  id: z.string(),
  aid: z.string(),
  cid: z.string(),
  role: z.enum(AGENT_ROLES),
  nid: z.string().nullable(),
  controlPlane: z.boolean(),
  status: z.enum(['healthy', 'degraded', 'offline']),
  revoked: z.boolean(),
  lastHeartbeatAt: iso.nullable(),
  secondsSinceHeartbeat: z.number().nullable(),
  version: z.string().nullable(),
  metrics: z.record(z.string(), z.unknown()).nullable(),
  vpn: z.record(z.string(), z.unknown()).nullable(),
  createdAt: iso,
});
const clusterView = z.looseObject({ cid: z.string(), aid: z.string(), domain: z.string(), createdAt: iso.optional() });
const logLineView = z.looseObject({ id: z.number().int(), ts: iso, stream: z.string(), text: z.string() });
const bundleInputView = z.looseObject({
  type: z.enum(['string', 'number', 'boolean']),
  description: z.string().optional(),
  required: z.boolean(),
  default: z.union([z.string(), z.number(), z.boolean()]).optional(),
});
/** The bundle at the source's registered commit: what a deploy form is generated from. */
const bundleInfoView = z.looseObject({ name: z.string(), version: z.string(), description: z.string().optional(), inputs: z.record(z.string(), bundleInputView) });
export const bundleSourceView = z.looseObject({
  name: z.string(),
  url: z.string(),
  ref: z.string(),
  path: z.string(),
  commit: z.string().nullable(),
  bundle: bundleInfoView.nullable(),
  bundleError: z.string().optional(),
  createdAt: iso,
  updatedAt: iso,
});
const instanceView = z.looseObject({
  osid: z.string(),
  cluster: z.string(),
  namespace: z.string(),
  host: z.string(),
  ports: z.record(z.string(), z.string()),
  bundle: z.looseObject({ source: z.string(), name: z.string(), version: z.string(), url: z.string(), path: z.string(), commit: z.string() }),
  inputs: z.record(z.string(), z.unknown()),
  state: z.enum(['deploying', 'deployed', 'failed', 'deleting', 'deleted', 'delete_failed']),
  version: z.number().int(),
  job: z.looseObject({ id: z.number().int(), action: z.enum(['apply', 'delete']), state: z.enum(COMMAND_STATES), error: commandError.nullable() }),
  outputs: z.record(z.string(), z.unknown()),
  sensitiveOutputs: z.record(z.string(), z.unknown()),
  syncStatus: z.enum(['synced', 'drifted', 'error', 'unknown']),
  lastCheckedAt: iso.nullable(),
  driftCheck: z.union([z.literal('off'), z.looseObject({ intervalSeconds: z.number().int() })]),
  autoSync: z.boolean(),
  nextCheckAt: iso.nullable(),
  createdAt: iso,
  updatedAt: iso,
});
const diffAnswer = z.looseObject({
  osid: z.string(),
  jobId: z.number().int(),
  reused: z.boolean().describe('true: a check of the instance was already queued or running and this is that job (200); none was queued'),
  prune: z.array(z.object({ name: z.string(), type: z.enum(['helm', 'manifest', 'tofu']), action: z.enum(['helm uninstall', 'manifest delete', 'tofu destroy']) })),
});
const deployResponse = z.looseObject({ osid: z.string(), jobId: z.number().int(), version: z.number().int(), instance: instanceView });
const instanceVersionView = z.looseObject({
  version: z.number().int(),
  action: z.enum(['deploy', 'upgrade', 'rollback', 'sync']),
  rollbackOf: z.number().int().nullable(),
  createdAt: iso,
  bundle: z.looseObject({ name: z.string(), version: z.string(), url: z.string(), path: z.string(), commit: z.string() }),
  inputs: z.record(z.string(), z.unknown()),
  job: z.looseObject({ id: z.number().int(), state: z.enum(COMMAND_STATES).nullable() }).nullable(),
});
const vpnUserView = z.looseObject({ id: z.string(), name: z.string(), address: z.string() });
const vpnClusterView = z.looseObject({
  nodes: z.array(z.looseObject({ nid: z.string(), wg0Address: z.string(), wg1Address: z.string(), endpoint: z.string().nullable() })),
  users: z.array(vpnUserView),
});
const sessionView = z.looseObject({
  csrfToken: z.string().describe('send as X-CSRF-Token on every write made with the session cookie'),
  expiresAt: iso,
  account: z.looseObject({ aid: z.string(), name: z.string(), keyId: z.string(), tokenName: z.string() }),
});
const nextCursor = z.string().nullable().describe('pass as cursor for the next page; null on the last page');
const statusCounts = z.looseObject({ healthy: z.number().int(), degraded: z.number().int(), offline: z.number().int() });
const overviewView = z.looseObject({
  generatedAt: iso,
  clusters: z.array(z.looseObject({ cid: z.string(), domain: z.string(), agents: statusCounts, clusterAgents: statusCounts, nodes: statusCounts })).describe('the first 200 clusters by cid'),
  clustersTotal: z.number().int(),
  agents: statusCounts,
  clusterAgents: statusCounts,
  nodes: statusCounts,
  commands: z.record(z.enum(COMMAND_STATES), z.number().int()),
  recentFailures: z.array(
    z.looseObject({ id: z.number().int(), cluster: z.string(), node: z.string().nullable(), type: z.string(), state: z.enum(COMMAND_STATES), attempts: z.number().int(), error: commandError.nullable(), createdAt: iso, finishedAt: iso.nullable() }),
  ).describe('the 10 latest failed or timed-out commands'),
});
const bootstrapTokenCreated = z.looseObject({
  token: z.string(),
  id: z.string(),
  expiresAt: iso,
  cluster: z.string(),
  role: z.enum(AGENT_ROLES),
  command: z.string().describe('the command that enrols the agent with this token: tether-node register … (node) or helm install … --set bootstrapToken=… (cluster-agent); it reads the CA certificate from ca.crt'),
  caCert: z.string().describe('PEM of the CA certificate the command expects in ca.crt'),
});
const bootstrapTokenView = z.looseObject({ id: z.string(), cluster: z.string(), role: z.enum(AGENT_ROLES), controlPlane: z.boolean(), state: z.enum(['unused', 'used', 'expired']), createdAt: iso, expiresAt: iso, usedAt: iso.nullable(), usedByAgent: z.string().nullable() });
const apiTokenView = z.looseObject({ keyId: z.string(), name: z.string(), state: z.enum(['active', 'revoked', 'expired']), createdAt: iso, expiresAt: iso, revokedAt: iso.nullable() });
const principal = z.looseObject({ agentId: z.string(), aid: z.string(), cid: z.string(), role: z.enum(AGENT_ROLES) });

/** The JSON of every error. */
export const errorSchema = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

// ------------------------------------------------------------------ the route table

const id = { id: z.string().regex(/^[1-9][0-9]{0,15}$/, 'a positive integer').describe('job id') };

export const ROUTES: RouteDoc[] = [
  { method: 'get', path: '/healthz', auth: 'none', summary: 'liveness: the process serves (no I/O; stays 200 while draining)', ok: { 200: z.object({ ok: z.literal(true) }) }, errors: [] },
  { method: 'get', path: '/readyz', auth: 'none', summary: 'readiness for a load balancer: not draining, the database answers, its migrations are this version\'s (503 draining|database_unavailable|migrations_pending|schema_newer, with Retry-After)', ok: { 200: z.object({ ready: z.literal(true) }) }, errors: [503] },
  { method: 'get', path: '/metrics', auth: 'metrics', summary: 'Prometheus metrics (name=<metric>: that one alone)', query: z.object({ name: z.string().max(200).optional() }), ok: { 200: undefined }, produces: 'text/plain', errors: [404] },
  { method: 'get', path: '/v1/openapi.json', auth: 'none', summary: 'this document', ok: { 200: z.looseObject({ openapi: z.string() }) }, errors: [] },
  { method: 'post', path: '/v1/sessions', auth: 'none', summary: 'sign in to the console: trade an API token for a session cookie (tether_session: HttpOnly, Secure, SameSite=Strict) and its CSRF token', body: createSessionSchema, ok: { 201: sessionView }, errors: [401, 429] },
  { method: 'get', path: '/v1/sessions/current', auth: 'session', summary: 'the session of this cookie, with its CSRF token (the console calls it on load)', ok: { 200: sessionView }, errors: [] },
  { method: 'delete', path: '/v1/sessions/current', auth: 'session', summary: 'sign out: revoke the session and clear its cookie', ok: { 204: undefined }, errors: [] },
  { method: 'get', path: '/v1/whoami', auth: 'bearer', summary: 'the account of this API token', ok: { 200: z.object({ aid: z.string() }) }, errors: [] },
  { method: 'post', path: '/v1/clusters', auth: 'bearer', summary: 'create a cluster', body: createClusterSchema, ok: { 201: clusterView }, errors: [409] },
  { method: 'get', path: '/v1/clusters', auth: 'bearer', summary: 'list clusters', ok: { 200: z.object({ clusters: z.array(clusterView) }) }, errors: [] },
  { method: 'get', path: '/v1/overview', auth: 'bearer', summary: "the account at a glance (the console's overview): clusters with their agents and nodes by status, commands by state, the latest failures; counted in SQL", ok: { 200: overviewView }, errors: [] },
  { method: 'post', path: '/v1/tokens', auth: 'bearer', summary: 'a one-time bootstrap token for an agent, with the command that enrols the agent', body: createBootstrapTokenSchema, ok: { 201: bootstrapTokenCreated }, errors: [404] },
  { method: 'get', path: '/v1/tokens', auth: 'bearer', summary: 'bootstrap tokens, newest first, a page at a time (never a secret)', query: listBootstrapTokensQuery, ok: { 200: z.object({ tokens: z.array(bootstrapTokenView), nextCursor }) }, errors: [] },
  { method: 'get', path: '/v1/api-tokens', auth: 'bearer', summary: 'API tokens of this account, newest first, a page at a time (never a secret)', query: listApiTokensQuery, ok: { 200: z.object({ tokens: z.array(apiTokenView), nextCursor }) }, errors: [] },
  { method: 'post', path: '/v1/api-tokens', auth: 'bearer', summary: 'a new API token of this account', body: createApiTokenSchema, ok: { 201: z.looseObject({ token: z.string() }) }, errors: [] },
  { method: 'delete', path: '/v1/api-tokens/{keyId}', auth: 'bearer', summary: 'revoke an API token', params: { keyId: z.string().min(1).max(200) }, ok: { 204: undefined }, errors: [404] },
  { method: 'post', path: '/v1/commands', auth: 'bearer', summary: 'submit a command (202 created, 200 an existing one with the same idempotency key)', body: submitCommandSchema, ok: { 202: z.looseObject({ id: z.number().int(), state: z.enum(COMMAND_STATES), created: z.boolean(), command: commandView }), 200: z.looseObject({ id: z.number().int(), state: z.enum(COMMAND_STATES), created: z.boolean(), command: commandView }) }, errors: [404, 409] },
  { method: 'get', path: '/v1/commands', auth: 'bearer', summary: 'list commands, newest first, a page at a time (without outputs: GET /v1/commands/{id} has them)', query: listCommandsQuery, ok: { 200: z.object({ commands: z.array(commandListView), nextCursor }) }, errors: [] },
  { method: 'get', path: '/v1/commands/{id}', auth: 'bearer', summary: 'one command', params: id, ok: { 200: commandView }, errors: [404] },
  { method: 'post', path: '/v1/commands/{id}/cancel', auth: 'bearer', summary: 'cancel a command (a running one through its agent)', params: id, ok: { 202: commandView }, errors: [404, 409] },
  { method: 'get', path: '/v1/commands/{id}/logs', auth: 'bearer', summary: "a command's log lines; with follow=1 (or Accept: text/event-stream) Server-Sent Events until it ends", params: id, query: logsQuery, ok: { 200: z.object({ lines: z.array(logLineView) }) }, errors: [404], produces: 'text/event-stream' },
  { method: 'get', path: '/v1/agents', auth: 'bearer', summary: 'agents with their status from heartbeats, by cluster, a page at a time (default and at most 200)', query: listAgentsQuery, ok: { 200: z.object({ agents: z.array(agentView), nextCursor }) }, errors: [] },
  { method: 'get', path: '/v1/agents/{id}', auth: 'bearer', summary: 'one agent', params: { id: agentIdSchema }, ok: { 200: agentView }, errors: [404] },
  { method: 'post', path: '/v1/agents/{id}/revoke', auth: 'bearer', summary: "revoke an agent's certificate", params: { id: agentIdSchema }, ok: { 200: agentView }, errors: [404] },
  { method: 'post', path: '/v1/bundles', auth: 'bearer', summary: 'register (or update) a bundle source', body: registerBundleSchema, ok: { 201: bundleSourceView, 200: bundleSourceView }, errors: [409, 422] },
  { method: 'get', path: '/v1/bundles', auth: 'bearer', summary: 'list bundle sources', ok: { 200: z.object({ bundles: z.array(bundleSourceView) }) }, errors: [] },
  { method: 'get', path: '/v1/bundles/{name}', auth: 'bearer', summary: 'one bundle source, with the bundle (name, version, typed inputs) at its registered commit', params: { name: dnsLabel() }, ok: { 200: bundleSourceView }, errors: [404] },
  { method: 'delete', path: '/v1/bundles/{name}', auth: 'bearer', summary: 'remove a bundle source, its credentials and its cached mirror', params: { name: dnsLabel() }, ok: { 204: undefined }, errors: [404] },
  { method: 'post', path: '/v1/instances', auth: 'bearer', summary: 'deploy a bundle to a cluster', body: deploySchema, ok: { 202: deployResponse }, errors: [404, 409, 422] },
  { method: 'get', path: '/v1/instances', auth: 'bearer', summary: 'list instances, oldest first, a page at a time', query: listInstancesQuery, ok: { 200: z.object({ instances: z.array(instanceView), nextCursor }) }, errors: [] },
  { method: 'get', path: '/v1/instances/{osid}', auth: 'bearer', summary: 'one instance', params: { osid: osidParam }, ok: { 200: instanceView }, errors: [404] },
  { method: 'patch', path: '/v1/instances/{osid}', auth: 'bearer', summary: "an instance's scheduled drift checks (driftCheck: {intervalSeconds: 60..86400} or 'off'; default the server's --drift-interval) and autoSync (a check that finds drift submits a sync; off by default)", params: { osid: osidParam }, body: driftSettingsSchema, ok: { 200: instanceView }, errors: [404, 409] },
  { method: 'get', path: '/v1/instances/{osid}/versions', auth: 'bearer', summary: "versions of an instance's desired state, oldest first: the newest limit (default 100, at most 1000) below before", params: { osid: osidParam }, query: versionsQuery, ok: { 200: z.object({ versions: z.array(instanceVersionView) }) }, errors: [404] },
  { method: 'get', path: '/v1/instances/{osid}/versions/{version}', auth: 'bearer', summary: "one version of an instance's desired state", params: { osid: osidParam, version: versionParam }, ok: { 200: instanceVersionView }, errors: [404] },
  { method: 'post', path: '/v1/instances/{osid}/deploy', auth: 'bearer', summary: 'upgrade an instance in place (with version: roll back to that version, as a new version)', params: { osid: osidParam }, body: redeploySchema, ok: { 202: deployResponse }, errors: [404, 409, 422] },
  { method: 'post', path: '/v1/instances/{osid}/diff', auth: 'bearer', summary: "check an instance for drift: its current desired state (or the body's commit and inputs, tether diff --file) compiled to a flow of diff steps, queued as a job (202; syncStatus and lastCheckedAt are recorded when it ends, for its own desired state only); while a check of its own desired state is queued or running, a check of it answers that job (200, reused: true) instead of queuing another; prune: the resources that desired state would remove, in removal order", params: { osid: osidParam }, query: deleteQuery, body: desiredStateSchema, ok: { 202: diffAnswer, 200: diffAnswer }, errors: [404, 409, 422] },
  { method: 'post', path: '/v1/instances/{osid}/sync', auth: 'bearer', summary: "apply an instance's current desired state again (its latest version's commit and inputs; or the body's commit of its source and inputs, tether sync --file), as the next version (action sync), pruning what it no longer has: what repairs drift", params: { osid: osidParam }, query: deleteQuery, body: desiredStateSchema, ok: { 202: deployResponse }, errors: [404, 409, 422] },
  { method: 'delete', path: '/v1/instances/{osid}', auth: 'bearer', summary: 'tear an instance down', params: { osid: osidParam }, query: deleteQuery, ok: { 202: deployResponse }, errors: [404, 409] },
  { method: 'get', path: '/v1/clusters/{cid}/vpn', auth: 'bearer', summary: "a cluster's VPN: node addresses and user peers", params: { cid: cidSchema }, ok: { 200: vpnClusterView }, errors: [404] },
  { method: 'post', path: '/v1/clusters/{cid}/vpn/users', auth: 'bearer', summary: 'add a user peer; returns its client configuration', params: { cid: cidSchema }, body: createVpnUserSchema, ok: { 201: z.looseObject({ user: vpnUserView, clientConfig: z.string(), privateKeyIncluded: z.boolean() }) }, errors: [404, 409] },
  { method: 'get', path: '/v1/clusters/{cid}/vpn/users/{uid}/config', auth: 'bearer', summary: "a user peer's client configuration (without a private key)", params: { cid: cidSchema, uid: userId }, ok: { 200: z.looseObject({ user: vpnUserView, clientConfig: z.string() }) }, errors: [404] },
  { method: 'delete', path: '/v1/clusters/{cid}/vpn/users/{uid}', auth: 'bearer', summary: 'remove a user peer', params: { cid: cidSchema, uid: userId }, ok: { 204: undefined }, errors: [404] },
  { method: 'post', path: '/v1/bootstrap', auth: 'none', summary: 'trade a one-time bootstrap token and a CSR for a certificate (one-way TLS)', body: bootstrapRequestSchema, ok: { 201: bootstrapResponseSchema }, errors: [401, 403, 409, 429] },
  { method: 'get', path: '/v1/agent/whoami', auth: 'mtls', summary: 'the agent of this certificate', ok: { 200: principal }, errors: [429] },
  { method: 'get', path: '/v1/agent/poll', auth: 'mtls', summary: 'long-poll for the next command (held up to wait seconds)', query: pollQuery, ok: { 200: pollResponseSchema }, errors: [429] },
  { method: 'post', path: '/v1/agent/heartbeat', auth: 'mtls', summary: 'heartbeat with host metrics; answers cancellations', body: heartbeatRequestSchema, ok: { 200: heartbeatResponseSchema }, errors: [429] },
  { method: 'post', path: '/v1/agent/commands/{id}/result', auth: 'mtls', summary: "report a claimed command's outcome; with next=N (seconds, as the poll's wait) also claim the next command in the same request: `next` is what GET /v1/agent/poll?wait=N would answer (held up to N s when nothing is queued; empty when the replica drains, the agent is revoked or storage fails meanwhile: the result is stored all the same)", params: id, query: resultNextQuery, body: resultRequestSchema, ok: { 200: resultResponseSchema }, errors: [404, 409, 429] },
  { method: 'post', path: '/v1/agent/commands/{id}/logs', auth: 'mtls', summary: "append log lines of a claimed command (capped per command, rate-limited per agent)", params: id, body: logsRequestSchema, ok: { 200: z.object({ stored: z.number().int() }) }, errors: [404, 409, 429] },
  { method: 'post', path: '/v1/agent/certificate', auth: 'mtls', summary: 'renew this agent\'s certificate from a CSR (once at most half its lifetime is left, one at a time)', body: renewRequestSchema, ok: { 201: renewResponseSchema }, errors: [429] },
  { method: 'put', path: '/v1/agent/vpn/node', auth: 'mtls', role: 'node', summary: "register this node's WireGuard keys, ports and endpoint", body: vpnRegisterSchema, ok: { 200: vpnConfigSchema }, errors: [409, 429] },
  { method: 'get', path: '/v1/agent/vpn/config', auth: 'mtls', role: 'node', summary: "this node's WireGuard addresses and peers", ok: { 200: vpnConfigSchema }, errors: [404, 429] },
];

/** Statuses every route of a kind can answer. */
export function statusesOf(r: RouteDoc): number[] {
  const s = new Set<number>([...Object.keys(r.ok).map(Number), ...r.errors, 404, 503]);
  if (r.auth !== 'none') s.add(401);
  if (r.auth === 'mtls') s.add(403); // revoked, expired, or the wrong role
  // With the session cookie, a write without the session's X-CSRF-Token or from another origin.
  if ((r.auth === 'bearer' || r.auth === 'session') && r.method !== 'get') s.add(403);
  if (r.params || r.query || r.body) s.add(400);
  if (r.body) for (const x of [400, 413, 415]) s.add(x);
  return [...s].sort((a, b) => a - b);
}

// ------------------------------------------------------------------ the document

type Json = Record<string, unknown>;

/** JSON Schema (2020-12, as OpenAPI 3.1 uses) of what a client sends (`io: input`: before defaults and coercion). */
function schemaOf(t: z.core.$ZodType, io: 'input' | 'output'): Json {
  const s = z.toJSONSchema(t, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as Json;
  delete s.$schema;
  return s;
}

const REASONS: Record<number, string> = {
  400: 'invalid request: the body, a parameter or the query fails validation (`invalid_request`, `invalid_json`, `invalid_body`)',
  401: 'no or an invalid credential',
  403: 'the credential is valid but not allowed here (revoked, expired, wrong role), or a write made with the session cookie lacks the X-CSRF-Token of the session (`csrf_failed`) or comes from another origin (`cross_origin`)',
  404: 'no such object (or route)',
  409: 'conflicts with the current state',
  413: 'the body is too large',
  415: 'the body is not JSON, or is compressed',
  422: 'the referenced bundle cannot be used',
  429: "too many requests: failed bootstraps or sign-ins from this address, this agent's requests of this kind or its log bytes (Retry-After says when to try again), or a renewal too early or already in progress",
  503: 'storage unavailable, or the control plane is stopping; retry',
};

const packageVersion = (): string => (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export function openapiDocument(version = packageVersion()): Json {
  const paths: Record<string, Record<string, Json>> = {};
  for (const r of ROUTES) {
    const parameters: Json[] = [];
    for (const [name, t] of Object.entries(r.params ?? {})) parameters.push({ name, in: 'path', required: true, schema: schemaOf(t, 'input') });
    if (r.query) {
      const q = schemaOf(r.query, 'input') as { properties?: Record<string, Json>; required?: string[] };
      for (const [name, s] of Object.entries(q.properties ?? {})) parameters.push({ name, in: 'query', required: q.required?.includes(name) ?? false, schema: s });
    }
    const responses: Record<string, Json> = {};
    for (const status of statusesOf(r)) {
      if (status in r.ok) {
        const t = r.ok[status];
        const content: Json = {};
        if (t) content['application/json'] = { schema: schemaOf(t, 'output') };
        if (r.produces) content[r.produces] = { schema: { type: 'string', description: r.produces === 'text/event-stream' ? 'Server-Sent Events: `log` (a line), `state`, `end` (the final state, error and outputs)' : 'Prometheus text exposition format' } };
        responses[String(status)] = { description: status === 204 ? 'done' : 'ok', ...(t || r.produces ? { content } : {}) };
      } else {
        responses[String(status)] = { description: REASONS[status] ?? 'refused', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
      }
    }
    const op: Json = {
      operationId: `${r.method}${r.path.replace(/\{([^}]+)\}/g, 'By_$1').replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      summary: r.summary,
      security: r.auth === 'none' ? [] : r.auth === 'bearer' ? [{ bearer: [] }, { session: [] }] : [{ [r.auth]: [] }],
      ...(r.role ? { description: `Only agents of role ${r.role}.` } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: schemaOf(r.body, 'input') } } } } : {}),
      responses,
    };
    (paths[r.path] ??= {})[r.method] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Tether control plane API',
      version,
      description:
        'Generated from the route table in control-plane/http/openapi.ts and the zod schemas the server validates with; do not edit by hand (`node scripts/openapi.ts --write`). ' +
        'One HTTPS port serves the admin API (bearer API token `tether_pat_<keyId>.<secret>`, scoped to one account, or the web console\'s session cookie from POST /v1/sessions, whose writes need X-CSRF-Token) and the agent API (`/v1/agent/*`, mutual TLS with a certificate issued by the control plane, checked against revocation on every request). ' +
        '`/v1/bootstrap` needs neither: it trades a one-time bootstrap token and a CSR for a certificate over one-way TLS. Every error is `{error: {code, message}}`.',
    },
    servers: [{ url: 'https://127.0.0.1:8443' }],
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'tether_pat_<keyId>.<secret>' },
        session: { type: 'apiKey', in: 'cookie', name: 'tether_session', description: 'the web console\'s session (POST /v1/sessions); a request that is not GET/HEAD also needs the header X-CSRF-Token of the session and, when it has an Origin, the server\'s own origin' },
        metrics: { type: 'http', scheme: 'bearer', description: 'the metrics token, in <data-dir>/metrics-token (not an API token: it reads /metrics only)' },
        mtls: { type: 'mutualTLS', description: 'a client certificate issued by this control plane (POST /v1/bootstrap)' },
      },
      schemas: { Error: schemaOf(errorSchema, 'output') },
    },
    paths,
  };
}
