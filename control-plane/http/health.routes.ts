/**
 * Health for load balancers and orchestrators, without authentication and without reading a body:
 *
 * - `GET /healthz`: the process is alive and serving (a constant answer, no I/O).
 * - `GET /readyz`: this replica should get traffic: not draining (SIGTERM received), the database
 *   answers within a short timeout, and its schema is this binary's (no migration pending, none
 *   unknown: a newer replica migrated it). 200 `{ready: true}`, else 503 `{error}` naming the first
 *   failed check, with `Retry-After`.
 *
 * The database check is shared: concurrent probes wait for the one in progress and a result is
 * reused for READY_CACHE_MS, so a flood of /readyz costs at most one small query a second.
 */
import type { Router } from 'express';
import { Router as router } from 'express';
import { errorBody, errorMessage } from '../../common/errors.ts';

/** What /readyz found; `ok: false` names the check that failed. */
export type Readiness = { ok: true } | { ok: false; code: 'draining' | 'database_unavailable' | 'migrations_pending' | 'schema_newer'; message: string };

export interface ReadinessDeps {
  draining(): boolean;
  /** A trivial query (`select 1`). */
  ping(): Promise<unknown>;
  migrationStatus(): Promise<{ pending: string[]; unknown: string[] }>;
  timeoutMs?: number;
}

const READY_CACHE_MS = 1000;

export class ReadinessCheck {
  private readonly d: ReadinessDeps;
  private last: { at: number; result: Readiness } | undefined;
  private running: Promise<Readiness> | undefined;

  constructor(d: ReadinessDeps) {
    this.d = d;
  }

  async check(): Promise<Readiness> {
    // Draining is known at once, never cached: the load balancer should stop at the first probe after SIGTERM.
    if (this.d.draining()) return { ok: false, code: 'draining', message: 'this replica is shutting down' };
    if (this.last && Date.now() - this.last.at < READY_CACHE_MS) return this.last.result;
    this.running ??= this.probe().then((result) => {
      this.last = { at: Date.now(), result };
      this.running = undefined;
      return result;
    });
    return this.running;
  }

  private async probe(): Promise<Readiness> {
    const timeoutMs = this.d.timeoutMs ?? 2000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
    try {
      const status = await Promise.race([this.d.ping().then(() => this.d.migrationStatus()), timeout]);
      if (status === 'timeout') return { ok: false, code: 'database_unavailable', message: `the database did not answer within ${timeoutMs} ms` };
      if (status.pending.length) return { ok: false, code: 'migrations_pending', message: `migrations not applied yet: ${status.pending.join(', ')}` };
      if (status.unknown.length) return { ok: false, code: 'schema_newer', message: `the database was migrated by a newer version (${status.unknown.join(', ')}); upgrade this replica` };
      return { ok: true };
    } catch (err) {
      return { ok: false, code: 'database_unavailable', message: `the database is unavailable: ${errorMessage(err).slice(0, 200)}` };
    } finally {
      clearTimeout(timer);
    }
  }
}

export function healthRoutes(readiness: ReadinessCheck): Router {
  const r = router();
  r.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });
  r.get('/readyz', async (_req, res) => {
    const ready = await readiness.check();
    if (ready.ok) return void res.json({ ready: true });
    res.status(503).set('retry-after', '1').json(errorBody(ready.code, ready.message));
  });
  return r;
}
