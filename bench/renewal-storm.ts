/**
 * One tenant's certificate storm against another tenant's heartbeats (issue 11): a victim agent
 * heartbeats every 100 ms while an attacker agent of another cluster renews its certificate with
 * 16 requests at a time (`renew`), then bootstraps new agents 16 at a time with valid tokens
 * (`bootstrap`: every one of them is signed). Prints the victim's heartbeat latency per phase.
 *
 *   node bench/renewal-storm.ts [--seconds 15] [--concurrency 16]
 *
 * The control plane is `tether server` in its own process (bench/lib/server.ts), so the numbers
 * are its event loop's, not this script's.
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { AgentClient, bootstrapAgent } from '../common/agent/agent-client.ts';
import { createCsr, generateKeyPair } from '../common/csr.ts';
import { HttpClient } from '../common/http-client.ts';
import { startServer } from './lib/server.ts';
import { freePort } from './lib/net.ts';
import { BENCH_CACHE, nowMs, sleep, summarize } from './lib/util.ts';

const { values: flags } = parseArgs({ options: { seconds: { type: 'string', default: '15' }, concurrency: { type: 'string', default: '16' } } });
const seconds = Number(flags.seconds);
const concurrency = Number(flags.concurrency);

const dataDir = join(BENCH_CACHE, `renewal-storm-${process.pid}`);
rmSync(dataDir, { recursive: true, force: true });
const server = await startServer({ dataDir, port: await freePort(), logFile: join(BENCH_CACHE, `renewal-storm-${process.pid}.log`) });

async function agent(cid: string) {
  const token = (await server.admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: cid, role: 'cluster-agent' })).body.token;
  const keys = generateKeyPair();
  const id = await bootstrapAgent({ url: server.url, caPem: server.caPem, token, keys });
  return { keys, client: new AgentClient(server.url, { certPem: id.certificate, keyPem: keys.privateKeyPem, caPem: server.caPem }) };
}

/** Heartbeats of `victim` every 100 ms while `attack` runs; returns the latencies (ms). */
async function measure(victim: AgentClient, attack: (until: number) => Promise<{ ok: number; refused: Record<string, number> }>) {
  const until = Date.now() + seconds * 1000;
  const lat: number[] = [];
  const beats = (async () => {
    while (Date.now() < until) {
      const t0 = nowMs();
      await victim.heartbeat({ running: [] });
      lat.push(nowMs() - t0);
      await sleep(100);
    }
  })();
  const [outcome] = await Promise.all([attack(until), beats]);
  return { heartbeatMs: summarize(lat), ...outcome };
}

const SKIPPED = Symbol('skipped');

async function storm(until: number, one: () => Promise<unknown>) {
  let ok = 0;

  const refused: Record<string, number> = {};
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < until) {
        try {
          if ((await one()) !== SKIPPED) ok++;
        } catch (err) {
          const code = String((err as { code?: unknown }).code ?? err);
          refused[code] = (refused[code] ?? 0) + 1;
          if (code === 'rate_limited' || code === 'renewal_in_progress') await sleep(20);
        }
      }
    }),
  );
  return { ok, refused };
}

try {
  for (const cid of ['victim', 'attacker']) await server.admin.request('POST', '/v1/clusters', { cid });
  const victim = await agent('victim');
  const attacker = await agent('attacker');
  const csr = createCsr(attacker.keys, 'x');
  const results: Record<string, unknown> = {};
  results.quiet = await measure(victim.client, async (until) => {
    await sleep(until - Date.now());
    return { ok: 0, refused: {} };
  });
  results.renew = await measure(victim.client, (until) => storm(until, () => attacker.client.renew(csr)));
  const tokens: string[] = [];
  for (let i = 0; i < 400; i++) tokens.push((await server.admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'attacker', role: 'cluster-agent' })).body.token);
  // One CSR made up front and posted as is: making one per request (node-forge) would load this
  // process's event loop, where the victim's latency is measured.
  const bootstrapCsr = createCsr(generateKeyPair(), 'tether-agent');
  const anonymous = new HttpClient({ baseUrl: server.url, ca: server.caPem });
  results.bootstrap = await measure(victim.client, (until) =>
    storm(until, async () => {
      const token = tokens.pop();
      if (!token) return sleep(until - Date.now()).then(() => SKIPPED);
      return anonymous.request('POST', '/v1/bootstrap', { token, csr: bootstrapCsr });
    }),
  );
  anonymous.close();
  victim.client.close();
  attacker.client.close();
  console.log(JSON.stringify({ seconds, concurrency, ...results }, null, 2));
} finally {
  await server.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
