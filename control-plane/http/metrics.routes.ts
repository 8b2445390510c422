/**
 * GET /metrics (Prometheus text format), behind a token of its own: the metrics are
 * platform-wide (every account's commands and agents), so no account's API token reads them.
 * The token is created on first start in `<data-dir>/metrics-token` (0600), for Prometheus's
 * `authorization: {credentials_file: …}`; only its SHA-256 is kept in memory and the comparison
 * is in constant time. `?name=<metric>` answers that one metric alone.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { RequestHandler } from 'express';
import { notFound, unauthorized } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/files.ts';
import type { Metrics } from '../metrics.ts';

const sha256 = (s: string) => createHash('sha256').update(s).digest();

/** The metrics token in `file` (created, 0600, when absent); returns its SHA-256. */
export function loadOrCreateMetricsToken(file: string): Buffer {
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch {
    token = '';
  }
  if (!/^tether_metrics_[A-Za-z0-9_-]{32,}$/.test(token)) {
    token = `tether_metrics_${randomBytes(32).toString('base64url')}`;
    writeFileAtomic(file, `${token}\n`, 0o600);
  }
  return sha256(token);
}

export function metricsRoute(metrics: Metrics, tokenHash: Buffer): RequestHandler {
  return async (req, res) => {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    if (!m) throw unauthorized('missing Authorization: Bearer <metrics token> (the token is in <data-dir>/metrics-token)', 'missing_token');
    if (!timingSafeEqual(sha256(m[1]!), tokenHash)) throw unauthorized('not the metrics token (<data-dir>/metrics-token)', 'invalid_token');
    // ?name=<metric>: that one metric alone (monitors polling one gauge often, such as the
    // benchmark's tether_long_polls_held, should not have every collector scan the database).
    const name = req.query.name;
    if (typeof name === 'string') {
      if (!metrics.registry.getSingleMetric(name)) throw notFound(`no metric ${name}`, 'metric_not_found');
      res.set('content-type', metrics.registry.contentType).send(await metrics.registry.getSingleMetricAsString(name));
      return;
    }
    res.set('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  };
}
