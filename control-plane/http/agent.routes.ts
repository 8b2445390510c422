/** The agent API: long-poll, heartbeat, results, logs, renewal (mutual TLS), and bootstrap (one-way TLS). */
import { Router, type Response } from 'express';
import { z } from 'zod';
import { bootstrapRequestSchema, heartbeatRequestSchema, logsRequestSchema, renewRequestSchema, resultRequestSchema } from '../../common/wire.ts';
import { TetherError } from '../../common/errors.ts';
import type { IdentityService } from '../identity/identity.service.ts';
import type { QueueService } from '../queue/queue.service.ts';
import type { Config } from '../config.ts';
import type { Metrics } from '../metrics.ts';
import { requireAgent } from './auth.ts';
import { idParam } from './errors.ts';
import type { FailureLimiter } from './rate-limit.ts';

const agentOf = (res: Response) => res.locals.agent!;
const pollQuery = z.object({ wait: z.coerce.number().min(0).max(120).optional() });

export function bootstrapRoutes(deps: { identity: IdentityService; limiter: FailureLimiter }): Router {
  const r = Router();
  r.post('/bootstrap', async (req, res) => {
    const who = req.socket.remoteAddress ?? 'unknown';
    deps.limiter.check(who);
    try {
      res.status(201).json(await deps.identity.bootstrap(bootstrapRequestSchema.parse(req.body)));
    } catch (err) {
      if (err instanceof TetherError && (err.status === 401 || err.status === 403)) deps.limiter.fail(who);
      throw err;
    }
  });
  return r;
}

export function agentRoutes(deps: { identity: IdentityService; queue: QueueService; config: Config; metrics: Metrics }): Router {
  const { identity, queue, config } = deps;
  const r = Router();
  r.use(requireAgent(identity));

  r.get('/whoami', (_req, res) => {
    res.json(agentOf(res));
  });

  r.get('/poll', async (req, res) => {
    const q = pollQuery.parse(req.query);
    const waitMs = Math.min(q.wait ?? config.longPollSeconds, config.longPollSeconds) * 1000;
    const ac = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) ac.abort();
    });
    const out = await queue.poll(agentOf(res), waitMs, ac.signal);
    if (!ac.signal.aborted) res.json(out);
  });

  r.post('/heartbeat', async (req, res) => {
    res.json(await queue.heartbeat(agentOf(res), heartbeatRequestSchema.parse(req.body)));
  });

  r.post('/commands/:id/result', async (req, res) => {
    res.json(await queue.report(agentOf(res), idParam(req.params.id), resultRequestSchema.parse(req.body)));
  });

  r.post('/commands/:id/logs', async (req, res) => {
    const body = logsRequestSchema.parse(req.body);
    res.json({ stored: await queue.appendLogs(agentOf(res), idParam(req.params.id), body.leaseId, body.lines) });
  });

  r.post('/certificate', async (req, res) => {
    res.status(201).json(await identity.renew(agentOf(res), renewRequestSchema.parse(req.body).csr));
  });

  return r;
}
