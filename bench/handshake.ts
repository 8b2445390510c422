/**
 * `node bench/handshake.ts [--seconds 10] [--concurrency 8]`: the cost of a full TLS handshake
 * against `tether server` (its own process, a fresh data folder). Anonymous clients connect over
 * loopback with `tls.connect`, no session reuse (no session, no ticket), complete the handshake and
 * close, as refused attackers reconnecting in a loop do. Prints handshakes/s, the server's CPU per
 * handshake (from /proc, user + system) and the key type it served, and writes
 * bench/results/<date>-handshake.json.
 *
 * To measure another tree's server (e.g. the release before the ECDSA server certificate), point
 * BENCH_SERVER_ROOT at a checkout of it (bench/lib/server.ts starts its bin/tether).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { startServer } from './lib/server.ts';
import { freePort } from './lib/net.ts';
import { REPO_ROOT, loadAverage, procSample, sleep } from './lib/util.ts';

const { values: flags } = parseArgs({
  options: { seconds: { type: 'string', default: '10' }, concurrency: { type: 'string', default: '8' }, note: { type: 'string' } },
});
const seconds = Number(flags.seconds);
const concurrency = Number(flags.concurrency);
const log = (msg: string) => console.log(`[handshake ${new Date().toISOString().slice(11, 19)}] ${msg}`);

function handshake(port: number, ca: string): Promise<tls.PeerCertificate> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca, ALPNProtocols: ['http/1.1'] }, () => {
      if (s.isSessionReused()) reject(new Error('session reused: not a full handshake'));
      const cert = s.getPeerCertificate();
      s.destroy();
      resolve(cert);
    });
    s.once('error', (err) => {
      s.destroy();
      reject(err);
    });
  });
}

const dataDir = join(tmpdir(), `tether-bench-handshake-${process.pid}`);
mkdirSync(dataDir, { recursive: true, mode: 0o700 });
const port = await freePort();
const server = await startServer({ dataDir, port, logFile: join(dataDir, 'server.log') });
try {
  const first = await handshake(port, server.caPem);
  const keyType = first.asn1Curve ? `EC ${first.asn1Curve}` : `RSA-${first.bits}`;
  log(`server certificate key: ${keyType}; ${concurrency} clients for ${seconds} s`);
  for (let i = 0; i < 50; i++) await handshake(port, server.caPem); // warm-up
  await sleep(500);
  const load = loadAverage();
  const before = procSample(server.pid)!;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  let done = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        try {
          await handshake(port, server.caPem);
          done++;
        } catch {
          failed++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const after = procSample(server.pid)!;
  const serverCpuMs = after.cpuMs - before.cpuMs;
  const result = {
    keyType,
    seconds: Math.round(elapsed * 10) / 10,
    concurrency,
    handshakes: done,
    failed,
    handshakesPerSecond: Math.round(done / elapsed),
    serverCpuMsPerHandshake: Math.round((serverCpuMs / done) * 1000) / 1000,
    serverCpuPercent: Math.round(serverCpuMs / 10 / elapsed),
    loadAverage: load,
    cpus: cpus().length,
    serverRoot: process.env.BENCH_SERVER_ROOT ? 'BENCH_SERVER_ROOT' : 'this tree',
    note: flags.note,
  };
  log(`${done} full handshakes in ${result.seconds} s (${failed} failed): ${result.handshakesPerSecond}/s; server CPU ${result.serverCpuMsPerHandshake} ms per handshake (${result.serverCpuPercent}% of a core); load average ${load.join(' ')}`);
  const dir = join(REPO_ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${new Date().toISOString().slice(0, 19).replace(/:/g, '-')}-handshake.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  log(`wrote ${file}`);
} finally {
  await server.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
