import type { ErrorRequestHandler, RequestHandler } from 'express';
import { z } from 'zod';
import { TetherError, errorBody } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { formatIssues } from '../queue/queue.service.ts';

/**
 * What an error means for the API: a status and a stable code; anything unknown is a 500.
 * `hide`: absolute paths (the data folder) replaced in the message by `<data-dir>`: a client
 * has no business knowing where the server keeps its files.
 */
export function describeError(err: unknown, hide: readonly string[] = []): { status: number; code: string; message: string } {
  const d = describe(err);
  for (const p of hide) if (p.length > 1 && d.message.includes(p)) d.message = d.message.replaceAll(p, '<data-dir>');
  return d;
}

function describe(err: unknown): { status: number; code: string; message: string } {
  const e = err as { status?: unknown; type?: unknown; limit?: unknown; message?: unknown; code?: unknown } | null | undefined;
  if (err instanceof TetherError) return { status: err.status, code: err.code, message: err.message };
  // Any zod schema's error, classic or zod/mini (common/zod-mini.ts: the agent routes' VPN shapes).
  if (err instanceof z.core.$ZodError) return { status: 400, code: 'invalid_request', message: formatIssues(err.issues) };
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) {
    // body-parser: entity.too.large (413), entity.parse.failed (400), charset/encoding errors (415),
    // and errors without a type such as a corrupt gzip body (zlib, 400)
    return {
      status: e.status,
      code: e.type === 'entity.too.large' ? 'payload_too_large' : e.type === 'entity.parse.failed' ? 'invalid_json' : 'invalid_body',
      message:
        e.type === 'entity.too.large'
          ? `the request body is larger than ${String(e.limit)} bytes`
          : typeof e.type === 'string'
            ? String(e.message)
            : `the request body cannot be read: ${String(e.message)}`,
    };
  }
  if (typeof e?.code === 'string' && /^SQLITE_(FULL|READONLY|IOERR|BUSY|CANTOPEN)(_|$)/.test(e.code)) {
    // better-sqlite3 reports extended codes (SQLITE_IOERR_WRITE, SQLITE_READONLY_DBMOVED, …)
    return { status: 503, code: 'storage_unavailable', message: `storage is unavailable (${e.code}); nothing was changed` };
  }
  if (isPostgresUnavailable(e)) {
    // PostgreSQL unreachable, overloaded, shutting down, a statement timeout, a deadlock or
    // serialization failure: the transaction was rolled back, the client may retry.
    const code = typeof e?.code === 'string' ? e.code : 'connection';
    return { status: 503, code: 'storage_unavailable', message: `storage is unavailable (PostgreSQL ${code}); nothing was changed` };
  }
  return { status: 500, code: 'internal', message: 'internal error' };
}

/**
 * Logs a refused or failed request: 5xx as errors, auth refusals (401/403/429) as warnings with
 * code, route and peer address (security events: always logged), other 4xx at debug. `route` is
 * the path without its query string (which may hold anything), never a header or a token.
 */
export function logRefusal(log: Logger, err: unknown, r: { status: number; code: string }, req: { method: string; route: string; peer: string | null }): void {
  if (r.status >= 500) log.error({ err, method: req.method, path: req.route }, 'request failed');
  else if (r.status === 401 || r.status === 403 || r.status === 429) {
    log.warn({ method: req.method, path: req.route, status: r.status, code: r.code, peer: req.peer }, 'request refused');
  } else log.debug({ method: req.method, path: req.route, status: r.status, code: r.code }, 'request refused');
}

/** Every error becomes JSON {error:{code,message}} with a fitting status (see describeError). */
export function errorHandler(log: Logger, o: { hide?: readonly string[] } = {}): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const d = describeError(err, o.hide);
    logRefusal(log, err, d, { method: req.method, route: `${req.baseUrl}${req.path}`, peer: req.socket.remoteAddress ?? null });
    if (res.headersSent) {
      res.end();
      return;
    }
    // Refused before its body was read (401 before the body, 413, 503 busy): the connection is
    // closed after the answer instead of the rest of the upload being drained.
    if (!req.complete) res.set('connection', 'close');
    res.status(d.status).json(errorBody(d.code, d.message));
  };
}

export const notFoundRoute: RequestHandler = (req, res) => {
  res.status(404).json(errorBody('route_not_found', `no route ${req.method} ${req.path}`));
};

/** Parses a positive integer route parameter or refuses with 400. */
export function idParam(raw: unknown, name = 'id'): number {
  const s = String(raw);
  if (!/^[1-9][0-9]{0,15}$/.test(s)) throw new TetherError('invalid_request', `${name} must be a positive integer`, { status: 400 });
  return Number(s);
}

/**
 * PostgreSQL errors that mean "the database cannot serve now", not "this request is wrong": the
 * SQLSTATE classes 08 (connection), 53 (insufficient resources: disk full, too many
 * connections), 57 (operator intervention: statement timeout, shutdown), 40001/40P01
 * (serialization failure, deadlock), 55P03 (lock not available), 25006 (a read-only standby); and
 * the pg pool's own failures to reach the server (refused, reset, timed out, terminated).
 */
function isPostgresUnavailable(e: { code?: unknown; message?: unknown } | null | undefined): boolean {
  if (!e) return false;
  const code = typeof e.code === 'string' ? e.code : '';
  if (/^(08|53|57)[0-9A-Z]{3}$/.test(code) || ['40001', '40P01', '55P03', '25006'].includes(code)) return true;
  if (code === 'ECONNREFUSED' || code === 'ECONNRESET') return true; // what the pool's connect fails with
  const message = typeof e.message === 'string' ? e.message : '';
  return /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/.test(message);
}
