/**
 * The console's reads on a big account (issue 14): a control plane whose database holds 10,000
 * agents and 100,000 commands (test/support/seed.ts, written straight into SQLite), then each read
 * the console makes on load timed over real HTTPS with a bearer token, one request at a time:
 * GET /v1/overview, the first page of agents (200), of agents filtered by status, of commands
 * (100) and of commands filtered by type and state, and a page deep in the agents (cursor).
 *
 *   node bench/console-reads.ts [--agents 10000] [--commands 100000] [--clusters 100] [--runs 50]
 */
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../common/clock.ts';
import { silentLogger } from '../common/logger.ts';
import { HttpClient } from '../common/http-client.ts';
import { startControlPlane } from '../control-plane/app.ts';
import { sqliteOf } from '../control-plane/db/database.ts';
import { seedConsoleData } from '../test/support/seed.ts';

const { values: flags } = parseArgs({
  options: { agents: { type: 'string', default: '10000' }, commands: { type: 'string', default: '100000' }, clusters: { type: 'string', default: '100' }, runs: { type: 'string', default: '50' } },
});
const runs = Number(flags.runs);
const loadAtStart = loadavg()[0]!;
const dataDir = mkdtempSync(join(tmpdir(), 'tether-console-reads-'));
const clock = new ManualClock();
const cp = await startControlPlane({ dataDir, host: '127.0.0.1', port: 0 }, { clock, log: silentLogger(), reaper: false });
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
try {
  const aid = (await cp.db.selectFrom('accounts').select('aid').executeTakeFirstOrThrow()).aid;
  const t0 = performance.now();
  seedConsoleData(sqliteOf(cp.db), { aid, clusters: Number(flags.clusters), agents: Number(flags.agents), commands: Number(flags.commands), now: clock.now() });
  const seedMs = performance.now() - t0;
  const admin = new HttpClient({ baseUrl: cp.url, ca: cp.ca.caCertPem, bearerToken: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim() });
  const deep = (await admin.request<{ nextCursor: string }>('GET', '/v1/agents?limit=50&cluster=c050')).body.nextCursor;
  const reads: Record<string, string> = {
    overview: '/v1/overview',
    agentsFirstPage: '/v1/agents',
    agentsHealthyNodes: '/v1/agents?role=node&status=healthy',
    agentsNextPageOfACluster: `/v1/agents?limit=50&cluster=c050&cursor=${deep ?? ''}`,
    commandsFirstPage: '/v1/commands',
    commandsHelmFailed: '/v1/commands?type=helm&state=failed',
    commandsOfAClusterQueued: '/v1/commands?cluster=c007&state=queued',
  };
  const result: Record<string, { p50: number; p99: number; max: number; bytes: number }> = {};
  for (const [name, path] of Object.entries(reads)) {
    let bytes = 0;
    for (let i = 0; i < 3; i++) await admin.request('GET', path); // warm: statements prepared, pages cached
    const ms: number[] = [];
    for (let i = 0; i < runs; i++) {
      const s = performance.now();
      const r = await admin.request('GET', path);
      ms.push(performance.now() - s);
      bytes = JSON.stringify(r.body).length;
    }
    result[name] = { p50: +pct(ms, 50).toFixed(2), p99: +pct(ms, 99).toFixed(2), max: +Math.max(...ms).toFixed(2), bytes };
  }
  admin.close();
  console.log(JSON.stringify({ cores: cpus().length, load: [+loadAtStart.toFixed(1), +loadavg()[0]!.toFixed(1)], agents: Number(flags.agents), commands: Number(flags.commands), clusters: Number(flags.clusters), runs, seedMs: Math.round(seedMs), ms: result }, null, 1));
} finally {
  await cp.close();
  rmSync(dataDir, { recursive: true, force: true });
}
