/**
 * The web console's sign-in (issue 14): POST /v1/sessions trades an API token for a session
 * cookie, GET /v1/sessions/current answers the session (with its CSRF token) to the console on
 * load, DELETE /v1/sessions/current signs out. Failed sign-ins count against the address
 * (FailureLimiter), checked before the body is read.
 */
import { Router, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import { TetherError, unauthorized } from '../../common/errors.ts';
import { SESSION_COOKIE, type Session, type SessionsService } from '../sessions/sessions.service.ts';
import type { FailureLimits } from './rate-limit.ts';

/** A sign-in body holds one token: anything larger is refused before it is read. */
export const LOGIN_BODY_LIMIT_BYTES = 1024;

export const createSessionSchema = z.strictObject({ token: z.string().min(1).max(200).describe('an API token, tether_pat_…') });

/** POST /v1/sessions, as seen by middleware mounted at /v1 (it needs no credential: its body is one). */
export const isLogin = (req: Request): boolean => req.method === 'POST' && req.path === '/sessions';

const who = (req: Request) => req.socket.remoteAddress ?? 'unknown';

/** Refuses an address with too many failed sign-ins (429) before its body is read. */
export function loginLimit(limiter: FailureLimits): RequestHandler {
  return (req, _res, next) => {
    const checked = limiter.check(who(req)); // in memory: returns (or throws) at once
    if (checked) checked.then(() => next(), next);
    else next();
  };
}

const cookie = (value: string, maxAge: number) => `${SESSION_COOKIE}=${value}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=${maxAge}`;

function current(res: Response): Session {
  const s = res.locals.session;
  if (!s) throw unauthorized('no console session: sign in with POST /v1/sessions (the tether_session cookie)', 'no_session');
  return s;
}

export function sessionRoutes(deps: { sessions: SessionsService; limiter: FailureLimits }): Router {
  const { sessions, limiter } = deps;
  const r = Router();

  r.post('/sessions', async (req, res) => {
    const { token } = createSessionSchema.parse(req.body);
    let created: Awaited<ReturnType<SessionsService['create']>>;
    try {
      created = await sessions.create(token);
    } catch (err) {
      if (err instanceof TetherError && err.status === 401) await limiter.fail(who(req));
      throw err;
    }
    res.set({ 'set-cookie': cookie(created.secret, sessions.maxAgeSeconds(created.expiresAt)), 'cache-control': 'no-store' });
    res.status(201).json(created.view);
  });

  r.get('/sessions/current', async (_req, res) => {
    const s = current(res);
    res.set('cache-control', 'no-store').json(await sessions.view(s));
  });

  r.delete('/sessions/current', async (_req, res) => {
    await sessions.revoke(current(res));
    res.set({ 'set-cookie': cookie('', 0), 'cache-control': 'no-store' }).status(204).end();
  });

  return r;
}
