/**
 * Memory per held HTTP/2 connection on a bare Node server, without Tether's code: the floor that
 * Node's TLS (OpenSSL and its buffers) and nghttp2 set for one idle agent, and what a server
 * option or an allocator changes in it. The server is a child process with the control plane's
 * Node flags (`--max-semi-space-size=2 --optimize-for-size`), mutual TLS with an ECDSA P-256 server
 * certificate and an RSA-2048 client certificate (as Tether's CA issues), HTTP/2 by ALPN; each
 * client connection posts one heartbeat-sized JSON body, then holds a GET that is never answered
 * (a long-poll). RSS (and its anonymous part) is read from /proc after a forced GC, once after
 * 200 warm-up connections and again after N more: per connection = the difference / N.
 *
 *   node bench/connection-memory.ts [N] [variant JSON] ...
 *   variant: {"settings": {...http2 settings}, "h2": {...http2.createServer options},
 *             "tls": {...tls.createServer options}, "env": {...server environment}}
 *   e.g. node bench/connection-memory.ts 2000 '{}' '{"env":{"MALLOC_ARENA_MAX":"2"}}'
 *
 * Prints one JSON line per variant. Run it under the bench lock on a shared machine; the figure
 * does not depend on the load.
 */
import { execFileSync, fork } from 'node:child_process';
import http2 from 'node:http2';
import tls from 'node:tls';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface Variant {
  settings?: http2.Settings;
  h2?: http2.ServerOptions;
  tls?: tls.TlsOptions;
  env?: Record<string, string>;
}
interface Sample {
  rss: number;
  anon: number;
  heap: number;
  held: number;
}

if (process.argv[2] === '--server') serve(process.argv[3]!, JSON.parse(process.argv[4]!) as Variant);
else await main();

function serve(dir: string, v: Variant): void {
  const rd = (f: string) => readFileSync(join(dir, f));
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: 32, ...v.settings }, ...v.h2 });
  const held = new Set<http2.ServerHttp2Stream>();
  h2.on('stream', (s, headers) => {
    s.on('error', () => undefined);
    if (headers[':path'] === '/poll') {
      held.add(s);
      s.once('close', () => held.delete(s));
      return;
    }
    s.resume();
    s.on('end', () => {
      s.respond({ ':status': 200, 'content-type': 'application/json' });
      s.end('{"cancel":[]}');
    });
  });
  const srv = tls.createServer({ key: rd('srv.key'), cert: rd('srv.crt'), ca: [rd('ca.crt')], requestCert: true, rejectUnauthorized: false, ALPNProtocols: ['h2'], ...v.tls });
  srv.on('secureConnection', (sock) => h2.emit('connection', sock));
  srv.listen(0, '127.0.0.1', () => process.send!({ port: (srv.address() as { port: number }).port }));
  process.on('message', (m) => {
    if (m !== 'measure') return;
    const gc = (globalThis as { gc?: () => void }).gc!;
    for (let i = 0; i < 3; i++) gc();
    setTimeout(() => {
      gc();
      const st = readFileSync('/proc/self/status', 'utf8');
      const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(st)![1]);
      process.send!({ rss: kb('VmRSS'), anon: kb('RssAnon'), heap: process.memoryUsage().heapUsed, held: held.size } satisfies Sample);
    }, 1500);
  });
}

function pki(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tether-connmem-'));
  const ssl = (...a: string[]) => execFileSync('openssl', a, { cwd: dir, stdio: 'ignore' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=bench CA');
  ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'ext'), 'subjectAltName=IP:127.0.0.1\n');
  ssl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.crt', '-days', '1', '-extfile', 'ext');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'cli.key', '-out', 'cli.csr', '-subj', '/CN=agent');
  ssl('x509', '-req', '-in', 'cli.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'cli.crt', '-days', '1');
  return dir;
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 2000);
  const variants = process.argv.slice(3);
  if (variants.length === 0) variants.push('{}');
  const dir = pki();
  try {
    for (const variant of variants) console.log(JSON.stringify(await measure(dir, n, variant)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function measure(dir: string, n: number, variant: string) {
  const v = JSON.parse(variant) as Variant;
  const rd = (f: string) => readFileSync(join(dir, f));
  const child = fork(fileURLToPath(import.meta.url), ['--server', dir, variant], {
    execArgv: ['--expose-gc', '--max-semi-space-size=2', '--optimize-for-size'],
    env: { ...process.env, ...v.env },
  });
  try {
    const port = await new Promise<number>((r) => child.once('message', (m: { port: number }) => r(m.port)));
    const sample = () =>
      new Promise<Sample>((r) => {
        child.once('message', (m: Sample) => r(m));
        child.send('measure');
      });
    const ctx = tls.createSecureContext({ key: rd('cli.key'), cert: rd('cli.crt'), ca: rd('ca.crt') });
    const sessions: http2.ClientHttp2Session[] = [];
    const open = async () => {
      const s = http2.connect(`https://127.0.0.1:${port}`, { secureContext: ctx });
      s.on('error', () => undefined);
      sessions.push(s);
      await new Promise<void>((res, rej) => {
        const r = s.request({ ':method': 'POST', ':path': '/v1/agent/heartbeat', 'content-type': 'application/json' });
        r.on('error', rej);
        r.resume();
        r.on('end', () => res());
        r.end(JSON.stringify({ metrics: { cpuPercent: 1.5, memoryMiB: 1234, load: [0.1, 0.2, 0.3], uptimeMinutes: 12345, rssMiB: 60 } }));
      });
      s.request({ ':method': 'GET', ':path': '/poll' }).on('error', () => undefined);
    };
    const connect = async (count: number) => {
      for (let i = 0; i < count; i += 50) await Promise.all(Array.from({ length: Math.min(50, count - i) }, open));
    };
    await connect(200);
    const a = await sample();
    await connect(n);
    const b = await sample();
    for (const s of sessions) s.destroy();
    const per = (x: number, y: number) => Math.round(((y - x) / n) * 100) / 100;
    return { variant, connections: n, held: b.held, baseRssMiB: Math.round(a.rss / 102.4) / 10, rssPerConnectionKiB: per(a.rss, b.rss), anonPerConnectionKiB: per(a.anon, b.anon), heapPerConnectionKiB: per(a.heap / 1024, b.heap / 1024) };
  } finally {
    child.kill();
  }
}
