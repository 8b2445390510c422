/**
 * The console's first page against a big account (issue 14: renders in < 1 s with 10,000 agents and
 * 100,000 commands). A control plane in this process, its database seeded directly
 * (test/support/seed.ts: clusters, agents of every heartbeat age, commands in every state), and
 * Debian's headless Chromium (playwright-core) signed in with a session cookie loading `/`:
 * navigation timings, first contentful paint, the time until the overview's figures are on screen
 * (the page's User Timing mark `tether:overview-shown`),
 * the JavaScript transferred; cold (a new browser context each run: nothing cached) and warm
 * (hashed assets from the cache). Prints a JSON summary and writes bench/results/console-<time>.json.
 *
 *   node bench/console.ts [--agents 10000] [--commands 100000] [--clusters 50] [--runs 7]
 */
import { request } from 'node:https';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { BrowserContext } from 'playwright-core';
import { silentLogger } from '../common/logger.ts';
import { startControlPlane } from '../control-plane/app.ts';
import { sqliteOf } from '../control-plane/db/database.ts';
import { seedConsoleData } from '../test/support/seed.ts';
import { launchChromium } from '../test/console/browser.ts';
import { REPO_ROOT, loadAverage, summarize } from './lib/util.ts';

export interface ConsoleBenchOptions {
  agents: number;
  commands: number;
  clusters: number;
  runs: number;
  /** A row of bench/main.ts's table (when run from it). */
  row?: (figure: string, measure: string, value: string, target?: string, met?: boolean | null) => void;
}

/** Runs the scenario, writes bench/results/console-<time>.json and answers the summary (also `npm run bench -- --only console`). */
export async function consoleBench(o: ConsoleBenchOptions): Promise<Record<string, unknown>> {
  const runs = o.runs;
  const dataDir = mkdtempSync(join(tmpdir(), 'tether-console-bench-'));
  const cp = await startControlPlane({ dataDir, host: '127.0.0.1', port: 0 }, { log: silentLogger() });

  function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
    const u = new URL(cp.url);
    return new Promise((resolve, reject) => {
      const data = JSON.stringify(body);
      const req = request({ host: u.hostname, port: u.port, path, method: 'POST', ca: cp.ca.caCertPem, servername: 'localhost', headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(data)), ...headers } }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: b }));
      });
      req.on('error', reject);
      req.end(data);
    });
  }

  try {
    const sqlite = sqliteOf(cp.db);
    const aid = (sqlite.prepare('SELECT aid FROM accounts LIMIT 1').get() as { aid: string }).aid;
    const t0 = performance.now();
    seedConsoleData(sqlite, { aid, clusters: o.clusters, agents: o.agents, commands: o.commands, now: Date.now() });
    const seedMs = performance.now() - t0;
    const token = (await import('node:fs')).readFileSync(cp.adminTokenFile, 'utf8').trim();
    const signIn = await post('/v1/sessions', { token });
    if (signIn.status !== 201) throw new Error(`sign-in: ${signIn.status} ${signIn.body}`);
    const cookie = /tether_session=([^;]+)/.exec(String(signIn.headers['set-cookie']))![1]!;

    const browser = await launchChromium({ trustCertPem: cp.ca.serverCertPem });
    const url = new URL(cp.url);
    const newContext = async () => {
      const c = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      await c.addCookies([{ name: 'tether_session', value: cookie, domain: url.hostname, path: '/', httpOnly: true, secure: true, sameSite: 'Strict' }]);
      return c;
    };
    type Sample = { responseEnd: number; domContentLoaded: number; load: number; fcp: number; overviewShown: number; jsTransferBytes: number; overviewApiMs: number };
    const measure = async (context: BrowserContext): Promise<Sample> => {
      const page = await context.newPage();
      await page.goto(`${cp.url}/`, { waitUntil: 'commit' });
      // The overview's figures are on screen: the commands card holds its counts.
      await page.getByRole('list', { name: 'commands by state' }).locator('strong').first().waitFor({ timeout: 30_000 });
      // The page's own mark (set in the effect after the render that shows the figures), not when this process noticed.
      const shownAt = (await page.evaluate(`performance.getEntriesByName('tether:overview-shown')[0]?.startTime ?? -1`)) as number;
      await page.waitForLoadState('load');
      const r = (await page.evaluate(`(() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const fcp = performance.getEntriesByName('first-contentful-paint')[0];
        const res = performance.getEntriesByType('resource');
        const js = res.filter((e) => e.name.endsWith('.js')).reduce((n, e) => n + e.transferSize, 0);
        const api = res.find((e) => e.name.endsWith('/v1/overview'));
        return { responseEnd: nav.responseEnd, domContentLoaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd, fcp: fcp ? fcp.startTime : -1, jsTransferBytes: js, overviewApiMs: api ? api.responseEnd - api.requestStart : -1 };
      })()`)) as Omit<Sample, 'overviewShown'>;
      await page.close();
      return { ...r, overviewShown: shownAt };
    };

    const cold: Sample[] = [];
    for (let i = 0; i < runs; i++) {
      const c = await newContext();
      cold.push(await measure(c));
      await c.close();
    }
    const warm: Sample[] = [];
    const wc = await newContext();
    await measure(wc); // fills the cache
    for (let i = 0; i < runs; i++) warm.push(await measure(wc));
    await wc.close();
    await browser.close();

    const sum = (xs: Sample[]) => Object.fromEntries((Object.keys(xs[0]!) as (keyof Sample)[]).map((k) => [k, summarize(xs.map((x) => x[k]))]));
    const result = {
      scenario: 'console-first-page',
      at: new Date().toISOString(),
      seeded: { agents: o.agents, commands: o.commands, clusters: o.clusters, seedMs: Math.round(seedMs) },
      loadAverage: loadAverage(),
      runs,
      coldMs: sum(cold),
      warmMs: sum(warm),
    };
    const out = JSON.stringify(result, null, 2);
    process.stdout.write(`${out}\n`);
    mkdirSync(join(REPO_ROOT, 'bench', 'results'), { recursive: true });
    writeFileSync(join(REPO_ROOT, 'bench', 'results', `console-${result.at.replace(/[:.]/g, '-').slice(0, 19)}.json`), `${out}\n`);
    const shown = (k: 'coldMs' | 'warmMs') => (result[k] as Record<string, { p50: number; p90: number }>).overviewShown!;
    for (const k of ['warmMs', 'coldMs'] as const) {
      o.row?.('console first page', `${o.agents} agents, ${o.commands} commands, ${k === 'warmMs' ? 'warm' : 'cold'}: overview shown`, `p50 ${shown(k).p50} ms, p90 ${shown(k).p90} ms (${runs} runs)`, '< 1000 ms', shown(k).p90 < 1000);
    }
    return result;
  } finally {
    await cp.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values: flags } = parseArgs({
    options: { agents: { type: 'string', default: '10000' }, commands: { type: 'string', default: '100000' }, clusters: { type: 'string', default: '50' }, runs: { type: 'string', default: '7' } },
  });
  await consoleBench({ agents: Number(flags.agents), commands: Number(flags.commands), clusters: Number(flags.clusters), runs: Number(flags.runs) });
}
