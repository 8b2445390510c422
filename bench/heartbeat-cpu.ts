/**
 * `node bench/heartbeat-cpu.ts [--agents 200] [--heartbeats 20000] [--concurrency 2]`: the
 * control plane's own CPU time per heartbeat, a figure that does not depend on how much of the
 * machine the load generator gets. `tether server` runs as its own process (the bench data folder
 * and cached agent identities of bench/main.ts); this process connects `--agents` agents with the
 * agents' HTTP/2 client (one mTLS connection each), lets them settle, then has them send
 * `--heartbeats` heartbeats in total (bodies as the runtime sends them: everything every 12th,
 * otherwise the metrics that move), `--concurrency` in flight per agent. Server CPU (utime+stime
 * from /proc) over the heartbeats, minus the same server's idle CPU over as long with the same
 * connections, divided by the heartbeats answered. Also the RSS per connected agent. Writes
 * bench/results/<date>-heartbeat-cpu.json.
 *
 * BENCH_SERVER_ROOT=<another checkout> measures that tree's server (before/after).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Http2Client } from '../common/http2-client.ts';
import { startServer } from './lib/server.ts';
import { freePort } from './lib/net.ts';
import { ensureIdentities, identityDir, loadIdentities, loadKeys } from './lib/identities.ts';
import { BENCH_CACHE, REPO_ROOT, loadAverage, nowMs, procSample, sleep, summarize } from './lib/util.ts';

const { values: flags } = parseArgs({
  options: { agents: { type: 'string', default: '200' }, heartbeats: { type: 'string', default: '20000' }, concurrency: { type: 'string', default: '2' }, note: { type: 'string' } },
});
const agents = Number(flags.agents);
const total = Number(flags.heartbeats);
const concurrency = Number(flags.concurrency);
const log = (msg: string) => process.stderr.write(`[heartbeat-cpu ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

const body = (n: number) => {
  const uptimeSeconds = Math.round(process.uptime()) + 86_400;
  if (n % 12 === 0) return { version: '0.1.0', metrics: { cpuPercent: 3.2, memoryTotalBytes: 8_340_000_000, memoryUsedBytes: 2_110_000_000, load: [0.12, 0.2, 0.18], uptimeSeconds, rssBytes: 48_000_000 }, running: [] };
  const wobble = (n % 7) / 100;
  return { metrics: { cpuPercent: 3.2 + wobble, memoryUsedBytes: 2_110_000_000 + n * 4096, load: [0.12 + wobble, 0.2, 0.18], uptimeSeconds, rssBytes: 48_000_000 + n * 1024 }, running: [] };
};

const dataDir = join(BENCH_CACHE, 'cp-data');
const runDir = join(BENCH_CACHE, 'runs', `heartbeat-cpu-${new Date().toISOString().replace(/[:.]/g, '-')}`);
mkdirSync(runDir, { recursive: true });
const load0 = loadAverage();
const s = await startServer({ dataDir, port: await freePort(), logFile: join(runDir, 'server.log') });
const clients: Http2Client[] = [];
try {
  await ensureIdentities({ url: s.url, caPem: s.caPem, admin: s.admin, count: agents, log });
  const dir = identityDir(s.caPem);
  const ids = [...loadIdentities(dir).values()].slice(0, agents);
  const keys = loadKeys(dir);
  await sleep(2000);
  const base = procSample(s.pid)!;
  for (const [k, id] of ids.entries()) {
    clients.push(new Http2Client({ baseUrl: s.url, ca: s.caPem, cert: id.certPem, key: keys[id.key]!.privateKeyPem, userAgent: 'tether-agent', localAddress: `127.0.0.${1 + (k % 8)}` }));
  }
  // Connect (a full heartbeat each), then settle.
  for (let i = 0; i < clients.length; i += 20) await Promise.all(clients.slice(i, i + 20).map((c, j) => c.request('POST', '/v1/agent/heartbeat', body(12 * (i + j)), { timeoutMs: 60_000 })));
  await sleep(3000);
  const connected = procSample(s.pid)!;
  // The server's idle CPU with these connections open (timers, batches), over a few seconds.
  const i0 = procSample(s.pid)!;
  await sleep(5000);
  const i1 = procSample(s.pid)!;
  const idleCpuMsPerSecond = (i1.cpuMs - i0.cpuMs) / ((i1.at - i0.at) / 1000);
  log(`${clients.length} agents connected; server idle ${idleCpuMsPerSecond.toFixed(1)} ms CPU/s; ${total} heartbeats, ${concurrency} in flight per agent`);
  let next = 0;
  let ok = 0;
  let failed = 0;
  const lat: number[] = [];
  const c0 = procSample(s.pid)!;
  const t0 = nowMs();
  await Promise.all(
    clients.flatMap((c) =>
      Array.from({ length: concurrency }, async () => {
        while (next < total) {
          const n = next++;
          const a = nowMs();
          try {
            await c.request('POST', '/v1/agent/heartbeat', body(n), { timeoutMs: 60_000 });
            ok++;
            lat.push(nowMs() - a);
          } catch {
            failed++;
          }
        }
      }),
    ),
  );
  const seconds = (nowMs() - t0) / 1000;
  const c1 = procSample(s.pid)!;
  const cpuMs = c1.cpuMs - c0.cpuMs;
  const wallSeconds = (c1.at - c0.at) / 1000;
  const r = {
    date: new Date().toISOString(),
    command: `node bench/heartbeat-cpu.ts ${process.argv.slice(2).join(' ')}`.trim(),
    server: process.env.BENCH_SERVER_ROOT ? 'BENCH_SERVER_ROOT (another checkout)' : 'this checkout',
    note: flags.note,
    loadAverage: { start: load0, end: loadAverage() },
    agents: clients.length,
    heartbeats: ok,
    failed,
    seconds: Math.round(seconds * 100) / 100,
    heartbeatsPerSecond: Math.round(ok / seconds),
    serverCpuMs: Math.round(cpuMs),
    serverCpuPercent: Math.round((cpuMs / 10 / wallSeconds) * 10) / 10,
    serverCpuMsPerHeartbeat: Math.round((cpuMs / ok) * 1000) / 1000,
    serverIdleCpuMsPerSecond: Math.round(idleCpuMsPerSecond * 10) / 10,
    serverCpuMsPerHeartbeatIdleSubtracted: Math.round(((cpuMs - idleCpuMsPerSecond * wallSeconds) / ok) * 1000) / 1000,
    rssPerAgentKB: Math.round((connected.rssBytes - base.rssBytes) / 1024 / clients.length),
    latencyMs: summarize(lat),
  };
  mkdirSync(join(REPO_ROOT, 'bench/results'), { recursive: true });
  const file = join(REPO_ROOT, 'bench/results', `${r.date.slice(0, 19).replace(/:/g, '-')}-heartbeat-cpu.json`);
  writeFileSync(file, `${JSON.stringify(r, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(r, null, 2)}\nresults: ${file}\n`);
} finally {
  for (const c of clients) c.close();
  await s.stop();
}
