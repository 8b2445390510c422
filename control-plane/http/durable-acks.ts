/**
 * Express side of the durability barrier (db/durability.ts): an answer of the admin API, bundles,
 * VPN and bootstrap routes leaves only once everything committed before it is on disk (all but the
 * heartbeat batch, which the barrier does not cover: db/durability.ts). The answer
 * is held at `res.end` (where Express's `res.json`/`send` finish), so every route, present or
 * future, is covered without a line of its own. A failed sync turns the answer into 503
 * `storage_unavailable` when its headers are still unsent.
 */
import type { RequestHandler } from 'express';
import { errorBody } from '../../common/errors.ts';
import { describeError } from './errors.ts';
import type { Durability } from '../db/durability.ts';

export function durableAcks(durability: Durability): RequestHandler {
  if (durability.method === 'none' || durability.method === 'database-commit') return (_req, _res, next) => next();
  return (_req, res, next) => {
    const end = res.end;
    // res.end's overloads (chunk, encoding, callback) are passed through as they came.
    res.end = function (this: typeof res, ...args: unknown[]) {
      const wait = durability.barrier();
      if (!wait) return (end as (...a: unknown[]) => typeof res).apply(this, args);
      wait.then(
        () => (end as (...a: unknown[]) => typeof res).apply(this, args),
        (err: unknown) => {
          if (res.headersSent) return void (end as (...a: unknown[]) => typeof res).call(this);
          const d = describeError(err);
          const body = JSON.stringify(errorBody(d.code, d.message));
          res.statusCode = d.status;
          res.setHeader('content-type', 'application/json; charset=utf-8');
          res.setHeader('content-length', Buffer.byteLength(body));
          (end as (...a: unknown[]) => typeof res).call(this, body);
        },
      );
      return this;
    } as typeof res.end;
    next();
  };
}
