import type { ErrorRequestHandler, RequestHandler } from 'express';
import { ZodError } from 'zod';
import { TetherError, errorBody } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { formatIssues } from '../queue/queue.service.ts';

/**
 * Every error becomes JSON {error:{code,message}} with a fitting status. 5xx are logged as errors,
 * auth refusals (401/403/429) as warnings with code, route and peer address, other 4xx at debug.
 */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    let status = 500;
    let code = 'internal';
    let message = 'internal error';
    if (err instanceof TetherError) {
      ({ status, code, message } = err);
    } else if (err instanceof ZodError) {
      status = 400;
      code = 'invalid_request';
      message = formatIssues(err.issues);
    } else if (typeof err?.status === 'number' && err.status >= 400 && err.status < 500) {
      // body-parser: entity.too.large (413), entity.parse.failed (400), charset/encoding errors (415),
      // and errors without a type such as a corrupt gzip body (zlib, 400)
      status = err.status;
      code = err.type === 'entity.too.large' ? 'payload_too_large' : err.type === 'entity.parse.failed' ? 'invalid_json' : 'invalid_body';
      message = err.type === 'entity.too.large' ? `the request body is larger than ${err.limit} bytes` : typeof err.type === 'string' ? String(err.message) : `the request body cannot be read: ${String(err.message)}`;
    } else if (typeof err?.code === 'string' && /^SQLITE_(FULL|READONLY|IOERR|BUSY|CANTOPEN)(_|$)/.test(err.code)) {
      // better-sqlite3 reports extended codes (SQLITE_IOERR_WRITE, SQLITE_READONLY_DBMOVED, …)
      status = 503;
      code = 'storage_unavailable';
      message = `storage is unavailable (${err.code}); nothing was changed`;
    }
    // The route without its query string (which may hold anything), never a header or a token.
    const route = `${req.baseUrl}${req.path}`;
    if (status >= 500) log.error({ err, method: req.method, path: route }, 'request failed');
    else if (status === 401 || status === 403 || status === 429) {
      // Authentication and authorisation refusals are security events: always logged.
      log.warn({ method: req.method, path: route, status, code, peer: req.socket.remoteAddress ?? null }, 'request refused');
    } else log.debug({ method: req.method, path: route, status, code }, 'request refused');
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(status).json(errorBody(code, message));
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
