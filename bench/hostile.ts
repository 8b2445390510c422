/**
 * `npm run bench -- --only hostile`: 1,000 real agents (the load generators: mTLS, HTTP/2,
 * held long-polls, a heartbeat every 5 s) while anonymous clients attack the same port:
 * `bodies` connections each sending anonymous 2 MB JSON bodies to /v1/commands, over and over,
 * and `idle` connections held open doing nothing (half never send a TLS ClientHello, half finish
 * the handshake and send no request), reopened when the server closes them. The attackers come
 * from 64 loopback addresses (127.3.0.1 …), so each address stays under the per-address cap and
 * the other defences (authentication before the body, the parse gate, the timeouts) are what is
 * measured. Reports the agents' heartbeat latency and the server's peak RSS under attack.
 *
 * Loopback only; every loop is bounded by the attack's duration and a count.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { BenchServer } from './lib/server.ts';
import type { Fleet } from './lib/fleet.ts';
import { ProcWatcher, mb, sleep, summarize } from './lib/util.ts';

/** What the scenario needs from bench/main.ts. */
export interface HostileContext {
  agents: number;
  seconds: number;
  rampMs: number;
  server(name: string): Promise<BenchServer>;
  identities(s: BenchServer, n: number): Promise<unknown>;
  fleet(s: BenchServer, n: number): Promise<Fleet>;
  log(s: string): void;
  row(figure: string, measure: string, value: string, target?: string, met?: boolean | null): void;
  results: Record<string, unknown>;
}

/**
 * The scenario: the agents heartbeat for `seconds` alone, then for `seconds` under the attack;
 * heartbeat latency of both windows and the server's peak RSS under attack.
 */
export async function hostile(c: HostileContext): Promise<void> {
  const n = c.agents;
  const s = await c.server('hostile');
  const w = new ProcWatcher(s.pid, 250);
  try {
    await c.identities(s, n);
    const f = await c.fleet(s, n);
    try {
      await f.waitConnected(c.rampMs + 60_000, c.log);
      await sleep(5000);
      // The same window without the attack first: on a shared machine, what the attack adds.
      await f.stats(true);
      c.log(`hostile: ${n} agents; ${c.seconds} s without attack`);
      await sleep(c.seconds * 1000);
      const quiet = summarize((await f.stats(true)).hbLatency);
      w.reset();
      const base = w.read();
      c.log(`hostile: ${n} agents; attacking for ${c.seconds} s with 150 anonymous 2 MB bodies and 1,000 idle connections`);
      const a = await attack({ port: s.port, caPem: s.caPem, bodies: 150, idle: 1000, seconds: c.seconds });
      const st = await f.stats(true);
      const p = w.read();
      const hb = summarize(st.hbLatency);
      const r = {
        agents: n,
        seconds: c.seconds,
        heartbeatLatencyMs: hb,
        heartbeatLatencyWithoutAttackMs: quiet,
        heartbeatsOk: st.hbOk,
        heartbeatErrors: st.hbErr,
        pollErrors: st.pollErr,
        baselineRssMB: mb(base.rssBytes),
        peakRssMB: mb(p.peakRssBytes),
        cpuPercent: p.cpuPercent,
        attack: a,
        errors: st.errors,
      };
      c.results.hostile = r;
      c.row('7 hostile', `heartbeat latency, ${n} agents under attack`, `p50 ${hb.p50} ms, p99 ${hb.p99} ms, max ${hb.max} ms (${st.hbOk} ok, ${st.hbErr} errors)`, 'p99 < 250 ms', hb.p99 < 250 && st.hbErr === 0);
      c.row('7 hostile', 'heartbeat latency, same agents, no attack', `p50 ${quiet.p50} ms, p99 ${quiet.p99} ms, max ${quiet.max} ms`);
      c.row('7 hostile', 'server RSS under attack', `peak ${r.peakRssMB} MB (from ${r.baselineRssMB} MB)`, '< 600 MB', r.peakRssMB < 600);
      c.row('7 hostile', 'anonymous bodies', `${a.bodiesStarted} started, ${mb(a.bodyBytesWritten)} MB written, outcomes ${JSON.stringify(a.bodyOutcomes)}`);
      c.row('7 hostile', 'idle connections', `${a.idleOpened} opened, ${a.idleClosedByServer} closed by the server`);
    } finally {
      await f.stop();
    }
  } finally {
    w.stop();
    await s.stop();
  }
}

export interface AttackOptions {
  port: number;
  caPem: string;
  bodies: number;
  idle: number;
  seconds: number;
  addresses?: number;
  bodyBytes?: number;
}

export interface AttackStats {
  /** Bodies started, and how their requests ended (HTTP status, or 'closed' / 'error'). */
  bodiesStarted: number;
  bodyOutcomes: Record<string, number>;
  /** Body bytes written before the server answered or closed. */
  bodyBytesWritten: number;
  /** Idle connections opened, and how many the server closed during the attack. */
  idleOpened: number;
  idleClosedByServer: number;
  /** Connections refused at once (closed before a handshake or answered 503). */
  refused: number;
}

/** Runs the attack for `seconds`, then closes every connection it opened. */
export async function attack(o: AttackOptions): Promise<AttackStats> {
  const addresses = o.addresses ?? 64;
  const bodyBytes = o.bodyBytes ?? 2_000_000;
  const until = Date.now() + o.seconds * 1000;
  const maxAttempts = (o.bodies + o.idle) * 200; // a bound on reconnects whatever the timing
  let attempts = 0;
  const stats: AttackStats = { bodiesStarted: 0, bodyOutcomes: {}, bodyBytesWritten: 0, idleOpened: 0, idleClosedByServer: 0, refused: 0 };
  const open = new Set<net.Socket>();
  const from = (i: number) => `127.3.${Math.floor((i % addresses) / 250)}.${(i % addresses) % 250 + 1}`;
  const live = () => Date.now() < until && attempts < maxAttempts;
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const head = Buffer.from('{"x":"');
  const tail = Buffer.from('"}');

  const tlsConnect = (i: number) =>
    tls.connect({ host: '127.0.0.1', port: o.port, localAddress: from(i), ca: o.caPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] } as tls.ConnectionOptions);

  /** One anonymous 2 MB upload: resolves with how it ended. */
  const upload = (i: number) =>
    new Promise<string>((resolve) => {
      attempts++;
      stats.bodiesStarted++;
      const s = tlsConnect(i);
      open.add(s);
      let answer = '';
      let done = false;
      const finish = (how: string) => {
        if (done) return;
        done = true;
        open.delete(s);
        s.destroy();
        resolve(how);
      };
      s.on('error', () => finish(answer ? answer : 'error'));
      s.on('close', () => finish(answer ? answer : Date.now() >= until ? 'unanswered at the end' : 'closed'));
      s.on('data', (c: Buffer) => {
        answer += c.toString('latin1');
        const m = /^HTTP\/1\.1 (\d{3})/.exec(answer);
        if (m && answer.includes('\r\n\r\n')) finish(m[1]!);
      });
      s.once('secureConnect', async () => {
        s.write(`POST /v1/commands HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${bodyBytes}\r\n\r\n`);
        s.write(head);
        let sent = head.length;
        while (!done && sent < bodyBytes - tail.length && Date.now() < until) {
          const n = Math.min(chunk.length, bodyBytes - tail.length - sent);
          const ok = s.write(n === chunk.length ? chunk : chunk.subarray(0, n));
          sent += n;
          stats.bodyBytesWritten += n;
          if (!ok && s.writableNeedDrain) {
            await new Promise<void>((r) => {
              const go = () => {
                s.off('drain', go);
                s.off('close', go);
                r();
              };
              s.once('drain', go);
              s.once('close', go);
            });
          }
        }
        if (!done && sent >= bodyBytes - tail.length) s.write(tail);
      });
    });

  const bodyWorker = async (i: number) => {
    while (live()) {
      const how = await upload(i);
      stats.bodyOutcomes[how] = (stats.bodyOutcomes[how] ?? 0) + 1;
      if (how === '503' || how === 'closed') stats.refused++;
      await sleep(10);
    }
  };

  /** One idle connection (raw TCP, or TLS with no request), reopened when the server closes it. */
  const idleWorker = async (i: number) => {
    while (live()) {
      attempts++;
      const s = i % 2 === 0 ? net.connect({ host: '127.0.0.1', port: o.port, localAddress: from(i) }) : tlsConnect(i);
      open.add(s);
      stats.idleOpened++;
      const opened = Date.now();
      await new Promise<void>((r) => {
        s.on('error', () => undefined);
        s.resume(); // read, so that the server's close is seen
        s.once('close', () => r());
        const stop = setTimeout(() => r(), Math.max(0, until - Date.now()));
        s.once('close', () => clearTimeout(stop));
      });
      open.delete(s);
      if (!s.destroyed || Date.now() >= until) {
        s.destroy(); // the attack's end, not the server
        break;
      }
      stats.idleClosedByServer++;
      if (Date.now() - opened < 50) stats.refused++;
      await sleep(100);
    }
  };

  // At the end every connection is closed by us, whatever the server does with it (a server
  // that waits for the rest of a body would otherwise hold the attack open forever).
  const end = setTimeout(() => {
    for (const s of open) s.destroy();
  }, o.seconds * 1000);
  const workers = [...Array.from({ length: o.bodies }, (_, i) => bodyWorker(i)), ...Array.from({ length: o.idle }, (_, i) => idleWorker(o.bodies + i))];
  await Promise.all(workers);
  clearTimeout(end);
  for (const s of open) s.destroy();
  return stats;
}
