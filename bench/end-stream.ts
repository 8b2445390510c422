/**
 * When an HTTP/2 answer leaves under a backlog (issue 18): a bare Node server whose handler ends
 * each stream either with its body (`end(body)`, what the agent API does since ee28de9) or
 * after the body's write was reported done (`write(body, () => end())`, what it did before).
 *
 *   node bench/end-stream.ts [sessions=200] [rounds=3]
 *
 * The server (a child process: its own event loop) spends 1 ms on each request. The client (this
 * process, one session per request, as agents each have theirs) sends them all at once, so they
 * wait for each other in a backlog of ~N ms; it prints, in ms
 * after the round was sent, when the handler wrote each answer and when it was received. Received
 * as written: the answers leave as they are made. Received together at the end: each waited for
 * the whole backlog.
 */
import { fork } from 'node:child_process';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { percentile } from './lib/util.ts';

if (process.argv[2] === '--serve') serve(process.argv[3] === 'split');
else await main(Number(process.argv[2] ?? 200), Number(process.argv[3] ?? 3));

function serve(split: boolean) {
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.resume();
    stream.once('end', () => {
      const t = performance.now();
      while (performance.now() - t < 1) {
        // the handler's work: 1 ms
      }
      stream.respond({ ':status': 200 });
      const body = String(Date.now());
      if (split) stream.write(body, () => (stream.destroyed || stream.closed ? undefined : stream.end()));
      else stream.end(body);
    });
  });
  server.listen(0, '127.0.0.1', () => process.send!((server.address() as AddressInfo).port));
}

async function main(sessions: number, rounds: number) {
  const q = (xs: number[], p: number) => percentile([...xs].sort((a, b) => a - b), p * 100);
  for (const variant of ['split', 'end(body)', 'split', 'end(body)']) {
    const child = fork(new URL(import.meta.url).pathname, ['--serve', variant === 'split' ? 'split' : 'together']);
    const port = await new Promise<number>((r) => child.once('message', (m) => r(Number(m))));
    const clients = await Promise.all(
      Array.from({ length: sessions }, () => new Promise<http2.ClientHttp2Session>((r) => { const c = http2.connect(`http://127.0.0.1:${port}`); c.once('connect', () => r(c)); })),
    );
    for (let round = 0; round < rounds; round++) {
      const t0 = Date.now();
      const got = await Promise.all(
        clients.map(
          (c) =>
            new Promise<[number, number]>((resolve, reject) => {
              const s = c.request({ ':method': 'POST', ':path': '/heartbeat' });
              let body = '';
              s.on('data', (d: Buffer) => (body += d));
              s.on('end', () => resolve([Number(body) - t0, Date.now() - t0]));
              s.on('error', reject);
              s.end('{"metrics":{}}');
            }),
        ),
      );
      const written = got.map((g) => g[0]);
      const received = got.map((g) => g[1]);
      const lag = got.map((g) => g[1] - g[0]);
      console.log(
        `${variant.padEnd(9)} round ${round + 1}: written first/median/last ${q(written, 0)}/${q(written, 0.5)}/${q(written, 1)} ms, received ${q(received, 0)}/${q(received, 0.5)}/${q(received, 1)} ms; received after written: median ${q(lag, 0.5)} ms, p99 ${q(lag, 0.99)} ms`,
      );
    }
    for (const c of clients) c.close();
    child.kill();
  }
}
