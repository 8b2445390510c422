/** The admin REST API (bearer API token, account-scoped). */
import { Router, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import { isTerminal, AGENT_ROLES, COMMAND_STATES, cidSchema, createApiTokenSchema, createBootstrapTokenSchema, createClusterSchema, submitCommandSchema } from '../../common/wire.ts';
import type { AccountsService } from '../accounts/accounts.service.ts';
import type { IdentityService } from '../identity/identity.service.ts';
import { LIST_LIMIT_MAX, type CommandEvent, type QueueService } from '../queue/queue.service.ts';
import { requireAdmin } from './auth.ts';
import { COMMAND_TYPES } from '../../common/specs.ts';
import { enrolCommand } from '../../common/install-commands.ts';
import { PAGE_LIMIT_DEFAULT, cursorParam, decodeCursor, pageLimit } from '../pagination.ts';
import { idParam } from './errors.ts';

const aidOf = (res: Response) => res.locals.aid!;

export const listCommandsQuery = z.object({
  cluster: cidSchema.optional(),
  state: z.enum(COMMAND_STATES).optional(),
  type: z.enum(COMMAND_TYPES).optional(),
  limit: z.coerce.number().int().min(1).max(LIST_LIMIT_MAX).optional(),
  before: z.coerce.number().int().min(1).optional().describe('only commands with a smaller id (the cursor as a number)'),
  cursor: cursorParam,
});
export const listAgentsQuery = z.object({
  cluster: cidSchema.optional(),
  role: z.enum(AGENT_ROLES).optional(),
  status: z.enum(['healthy', 'degraded', 'offline']).optional(),
  limit: pageLimit,
  cursor: cursorParam,
});
export const listApiTokensQuery = z.object({ limit: pageLimit, cursor: cursorParam });
export const listBootstrapTokensQuery = z.object({ cluster: cidSchema.optional(), limit: pageLimit, cursor: cursorParam });
export const logsQuery = z.object({
  follow: z.enum(['1', 'true', '0', 'false']).optional(),
  after: z.coerce.number().int().min(0).optional(),
});

/**
 * POST /v1/commands, the one admin route on every command's path. app.ts mounts it on its own
 * right after the /v1 authentication and body layers (which have run when it is reached), not in
 * adminRoutes: Express would otherwise walk every router before it (sessions, bootstrap, VPN,
 * bundles, instances, then this router's own layers) for each submission (issue 18: ~5 KB of
 * garbage per command in the heap profile).
 */
export function submitCommandRoute(queue: QueueService): RequestHandler {
  return async (req, res) => {
    const { command, created } = await queue.submit(aidOf(res), submitCommandSchema.parse(req.body));
    res.status(created ? 202 : 200).json({ id: command.id, state: command.state, created, command });
  };
}

export function adminRoutes(deps: { accounts: AccountsService; identity: IdentityService; queue: QueueService }): Router {
  const { accounts, identity, queue } = deps;
  const r = Router();
  r.use(requireAdmin(accounts));

  r.get('/whoami', (_req, res) => {
    res.json({ aid: aidOf(res) });
  });
  r.get('/overview', async (_req, res) => {
    res.json(await accounts.overview(aidOf(res)));
  });

  r.post('/clusters', async (req, res) => {
    res.status(201).json(await accounts.createCluster(aidOf(res), createClusterSchema.parse(req.body)));
  });
  r.get('/clusters', async (_req, res) => {
    res.json({ clusters: await accounts.listClusters(aidOf(res)) });
  });

  r.post('/tokens', async (req, res) => {
    const body = createBootstrapTokenSchema.parse(req.body);
    const t = await identity.createBootstrapToken(aidOf(res), body);
    // What the console shows: the command that enrols the agent with this token, against this
    // server as the client reached it, and the CA certificate it names (ca.crt).
    const serverUrl = `https://${req.headers.host ?? '127.0.0.1'}`;
    const command = enrolCommand({ token: t.token, aid: aidOf(res), role: body.role, controlPlane: body.controlPlane ?? false, serverUrl });
    res.status(201).json({ ...t, cluster: body.cluster, role: body.role, command, caCert: identity.caCertPem });
  });
  r.get('/tokens', async (req, res) => {
    const q = listBootstrapTokensQuery.parse(req.query);
    res.json(await identity.listBootstrapTokens(aidOf(res), { cid: q.cluster, limit: q.limit ?? PAGE_LIMIT_DEFAULT, cursor: q.cursor }));
  });
  r.get('/api-tokens', async (req, res) => {
    const q = listApiTokensQuery.parse(req.query);
    res.json(await accounts.listApiTokens(aidOf(res), { limit: q.limit ?? PAGE_LIMIT_DEFAULT, cursor: q.cursor }));
  });
  r.post('/api-tokens', async (req, res) => {
    res.status(201).json(await accounts.createApiToken(aidOf(res), createApiTokenSchema.parse(req.body)));
  });
  r.delete('/api-tokens/:keyId', async (req, res) => {
    const ok = await accounts.revokeApiToken(aidOf(res), String(req.params.keyId));
    if (!ok) res.status(404).json({ error: { code: 'token_not_found', message: 'no such active API token' } });
    else res.status(204).end();
  });

  r.get('/commands', async (req, res) => {
    const q = listCommandsQuery.parse(req.query);
    const before = q.before ?? decodeCursor(q.cursor, z.tuple([z.number().int().min(1)]))?.[0];
    res.json(await queue.list(aidOf(res), { cid: q.cluster, state: q.state, type: q.type, limit: q.limit, beforeId: before }));
  });
  r.get('/commands/:id', async (req, res) => {
    res.json(await queue.get(aidOf(res), idParam(req.params.id)));
  });
  r.post('/commands/:id/cancel', async (req, res) => {
    res.status(202).json(await queue.cancel(aidOf(res), idParam(req.params.id)));
  });
  r.get('/commands/:id/logs', async (req, res) => {
    const id = idParam(req.params.id);
    const q = logsQuery.parse(req.query);
    const after = q.after ?? Number(req.headers['last-event-id'] ?? 0) ?? 0;
    const follow = q.follow === '1' || q.follow === 'true' || (req.headers.accept ?? '').includes('text/event-stream');
    if (!follow) {
      res.json({ lines: await queue.logs(aidOf(res), id, Number.isFinite(after) ? after : 0) });
      return;
    }
    await followLogs(queue, aidOf(res), id, Number.isFinite(after) ? after : 0, res);
  });

  r.get('/agents', async (req, res) => {
    const q = listAgentsQuery.parse(req.query);
    res.json(await identity.list(aidOf(res), { cid: q.cluster, role: q.role, status: q.status, limit: q.limit ?? LIST_LIMIT_MAX, cursor: q.cursor }));
  });
  r.get('/agents/:id', async (req, res) => {
    res.json(await identity.get(aidOf(res), agentIdParam(req.params.id)));
  });
  r.post('/agents/:id/revoke', async (req, res) => {
    res.json(await identity.revoke(aidOf(res), agentIdParam(req.params.id)));
  });

  return r;
}

export const agentIdSchema = z.string().regex(/^[a-z]{2}-[a-z0-9]{10}$/, 'not an agent id');
function agentIdParam(raw: unknown): string {
  return agentIdSchema.parse(raw);
}

/**
 * Server-Sent Events: the stored lines after `after`, then live lines and state changes until the
 * command reaches a terminal state (event `end`). Subscribes before reading the backlog so no line
 * falls between the two; lines already sent are skipped by id.
 */
async function followLogs(queue: QueueService, aid: string, id: number, after: number, res: Response) {
  const initial = await queue.get(aid, id);
  res.status(200).set({ 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  res.flushHeaders();
  let lastId = after;
  let ended = false;
  const pending: CommandEvent[] = [];
  let ready = false;
  const send = (ev: CommandEvent) => {
    if (ended) return;
    if (ev.kind === 'log') {
      if (ev.id <= lastId) return;
      lastId = ev.id;
      res.write(`id: ${ev.id}\nevent: log\ndata: ${JSON.stringify({ id: ev.id, ts: new Date(ev.ts).toISOString(), stream: ev.stream, text: ev.text })}\n\n`);
    } else {
      res.write(`event: state\ndata: ${JSON.stringify({ state: ev.state })}\n\n`);
      if (isTerminal(ev.state)) void finish(ev.state).catch(() => res.destroy());
    }
  };
  const listener = (ev: CommandEvent) => (ready ? send(ev) : pending.push(ev));
  const channel = `cmd:${id}`;
  queue.events.on(channel, listener);
  const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
  const cleanup = () => {
    ended = true;
    clearInterval(keepAlive);
    queue.events.off(channel, listener);
  };
  res.on('close', cleanup);
  // The end can be heard more than once (the state event, the check after the backlog, a copy
  // relayed from another replica), each while an earlier one awaits: one finish runs, and it
  // writes nothing once the client has gone.
  let finishing = false;
  const finish = async (state: string) => {
    if (ended || finishing) return;
    finishing = true;
    // Flush lines that were stored before the final state.
    for (const l of await queue.logs(aid, id, lastId)) send({ kind: 'log', id: l.id, ts: l.ts, stream: l.stream, text: l.text });
    const cmd = await queue.get(aid, id);
    if (ended) return;
    res.write(`event: end\ndata: ${JSON.stringify({ state, error: cmd.error, outputs: cmd.outputs })}\n\n`);
    cleanup();
    res.end();
  };

  for (;;) {
    const batch = await queue.logs(aid, id, lastId);
    for (const l of batch) send({ kind: 'log', id: l.id, ts: l.ts, stream: l.stream, text: l.text });
    if (batch.length < 1000) break;
  }
  ready = true;
  for (const ev of pending.splice(0)) send(ev);
  const now = initial.state === 'queued' || initial.state === 'running' ? (await queue.get(aid, id)).state : initial.state;
  if (isTerminal(now)) await finish(now);
}
