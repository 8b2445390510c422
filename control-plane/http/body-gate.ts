/**
 * Request bodies on the Express side (the admin API and bootstrap) are parsed only after the
 * request is authenticated (app.ts mounts this after the token check) and only so many at once:
 * at the cap a request is answered 503 `busy` with `Retry-After` before its body is read, so
 * memory spent on bodies is bounded by (cap × body limit) whatever the clients send.
 */
import express, { type RequestHandler } from 'express';
import { TetherError } from '../../common/errors.ts';

export class BodyGate {
  private active = 0;
  private readonly max: number;
  constructor(max: number) {
    this.max = max;
  }

  /** Bodies being read right now. */
  get reading(): number {
    return this.active;
  }

  /** express.json (at most `limit` bytes) under the gate. */
  json(limit: number): RequestHandler {
    const parse = express.json({ limit, strict: true });
    return (req, res, next) => {
      if (!hasBody(req.headers)) return parse(req, res, next);
      // Refused on its declared length at once (body-parser would wait for the whole upload to
      // arrive, and be drained, before answering).
      if (Number(req.headers['content-length']) > limit) throw new TetherError('payload_too_large', `the request body is larger than ${limit} bytes`, { status: 413 });
      if (this.active >= this.max) {
        res.set('retry-after', '1');
        throw new TetherError('busy', `the server is reading ${this.max} request bodies already; retry in a second`, { status: 503, retryable: true });
      }
      this.active++;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        this.active--;
      };
      res.once('close', release); // the client left while its body was being read
      parse(req, res, (err?: unknown) => {
        release();
        next(err);
      });
    };
  }
}

function hasBody(h: { 'content-length'?: string; 'transfer-encoding'?: string }): boolean {
  return h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0');
}
