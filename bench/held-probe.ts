/**
 * What the control plane does per second with many agents held (issue 18): a probe preloaded into
 * the bench's server, and the summaries of what it and `--cpu-prof` wrote. Four uses:
 *
 *   BENCH_HELD_PROBE_OUT=/tmp/probe npm run bench -- --only held --held 5000 --window 30 \
 *       --server-node-args=--import=$PWD/bench/held-probe.ts
 *     the server appends one JSON line a second to /tmp/probe-<pid>.jsonl: its GCs (count and
 *     milliseconds by kind, from PerformanceObserver), the event loop's delay (monitorEventLoopDelay,
 *     max and p99 of the second), the heartbeats' time inside the server (from the stream's headers
 *     parsed to the stream closed, its answer handed to the socket: p50/p90/p99/max of the second), the
 *     V8 heap in use, and with BENCH_HELD_PROBE_COUNT=1 every SQLite statement run (by
 *     its SQL) and every setTimeout/setInterval made (counting costs CPU: the CPU figures of such a
 *     run are not the server's own)
 *   node bench/held-probe.ts /tmp/probe-<pid>.jsonl <from ISO time> <seconds>
 *     the per-second rates over the window the bench measured ("held 5000: measuring for 30 s")
 *   node bench/held-probe.ts --answers /tmp/probe-<pid>-answers.jsonl bench/results/<run>.json
 *     the dispatch scenario's late claims beside the server's answers that carried them: the
 *     probe also writes, per answer handing an agent a command, when the stream was ended and closed
 *   BENCH_HELD_PROBE_V8_FLAGS='--trace-gc-nvp' (with the first use): V8 flags NODE_OPTIONS refuses,
 *     set in the server at start (--trace-gc-nvp: each GC's phases, in the server's log)
 *   kill -USR2 <server pid> (starts V8's CPU profiler), again N s later (writes <out>-<pid>-<ms>.cpuprofile)
 *   node bench/held-probe.ts --profile <file.cpuprofile>
 *     a CPU profile (the probe's or --cpu-prof's) by self time: by function, by the nearest frame of Tether's own code
 *     (control-plane/, common/), and GC/idle/program as V8 names them
 */
import { readFileSync, writeFileSync, readdirSync, openSync, writeSync } from 'node:fs';
import { Session } from 'node:inspector';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import fs from 'node:fs';
import http2 from 'node:http2';
import { PerformanceObserver, constants, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import { nowMs, summarize as latencies, type LatencySummary } from './lib/util.ts';

const out = process.env.BENCH_HELD_PROBE_OUT;
if (import.meta.url !== `file://${process.argv[1]}`) {
  // Preloaded (--import): only into the control plane, not into the programs it starts.
  if (out && process.argv[1]?.endsWith('control-plane/cli/main.ts')) probe(`${out}-${process.pid}.jsonl`);
} else {
  summarize(process.argv.slice(2));
}

function probe(file: string) {
  // V8 flags NODE_OPTIONS refuses (--trace-gc-nvp: each GC's phases, in the server's log), set at run time.
  if (process.env.BENCH_HELD_PROBE_V8_FLAGS) v8.setFlagsFromString(process.env.BENCH_HELD_PROBE_V8_FLAGS);
  const gcKinds: Record<number, string> = {
    [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
    [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
    [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
  };
  const gc: Record<string, { n: number; ms: number; maxMs: number }> = {};
  let secMax = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = gcKinds[(e as unknown as { detail: { kind: number } }).detail.kind] ?? 'other';
      const g = (gc[kind] ??= { n: 0, ms: 0, maxMs: 0 });
      g.n++;
      g.ms += e.duration;
      g.maxMs = Math.max(g.maxMs, e.duration);
      secMax = Math.max(secMax, e.duration);
    }
  }).observe({ entryTypes: ['gc'] });
  const eld = monitorEventLoopDelay({ resolution: 5 });
  eld.enable();
  // Each heartbeat's time in the server: a listener of the agent server's 'stream' event ahead of
  // the server's own (the agent API is the process's one HTTP/2 server). Compared with the load
  // generator's latency it tells the server's share of the tail from the rest (the network, the
  // load generator's own stalls).
  const served: number[] = [];
  const createServer = http2.createServer;
  http2.createServer = ((...a: Parameters<typeof http2.createServer>) => {
    const server = createServer(...a);
    server.prependListener('stream', (stream, headers) => {
      const path = headers[':path'] ?? '';
      if (path === '/v1/agent/heartbeat') {
        const t0 = performance.now();
        stream.once('close', () => served.push(performance.now() - t0));
      } else if (path.startsWith('/v1/agent/poll') || path.includes('next=')) recordAnswer(stream);
    });
    return server;
  }) as typeof http2.createServer;
  // Each answer that hands an agent a command (a poll's, or a result's with ?next): the command's
  // id, when the server ended the stream with it and when the stream closed (its last frame handed
  // to the socket), in wall-clock ms as the load generators stamp a claim's receipt. Set beside the
  // bench's late claims it tells an answer the server wrote late from one received late.
  const answers = openSync(file.replace(/\.jsonl$/, '-answers.jsonl'), 'a');
  const recordAnswer = (stream: http2.ServerHttp2Stream) => {
    const end = stream.end;
    stream.end = function (this: http2.ServerHttp2Stream, ...a: unknown[]) {
      const body = a[0];
      const text = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8', 0, 200) : '';
      const id = /"command":\{"id":(\d+)/.exec(text)?.[1];
      if (id !== undefined) {
        const endAt = nowMs();
        stream.once('close', () => writeSync(answers, `${JSON.stringify({ id: Number(id), endAt, closeAt: nowMs() })}\n`));
      }
      return (end as (...x: unknown[]) => http2.ServerHttp2Stream).apply(this, a);
    } as typeof stream.end;
  };
  // Each WAL sync of the group commit (db/durability.ts: fdatasync on the thread pool), from the
  // call to its callback, on the same file: the answers above wait for the sync after their claim.
  const fdatasync = fs.fdatasync;
  fs.fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    const startAt = nowMs();
    fdatasync(fd, (err) => {
      writeSync(answers, `${JSON.stringify({ syncStartAt: startAt, syncEndAt: nowMs() })}\n`);
      cb(err);
    });
  }) as typeof fs.fdatasync;
  syncBuiltinESMExports(); // the server's `import { fdatasync } from 'node:fs'` sees the wrapper
  const counts = new Map<string, number>();
  const count = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);
  if (process.env.BENCH_HELD_PROBE_COUNT === '1') {
    const st = globalThis.setTimeout;
    const si = globalThis.setInterval;
    globalThis.setTimeout = ((...a: Parameters<typeof setTimeout>) => (count('setTimeout'), st(...a))) as typeof setTimeout;
    globalThis.setInterval = ((...a: Parameters<typeof setInterval>) => (count('setInterval'), si(...a))) as typeof setInterval;
    // The same better-sqlite3 the server loads (module cache): count every run/get/all by its SQL.
    const req = createRequire(process.argv[1]!); // the server's own node_modules (BENCH_SERVER_ROOT's too)
    try {
      const Database = req('better-sqlite3') as { prototype: { prepare: (sql: string) => unknown } };
      const prepare = Database.prototype.prepare;
      Database.prototype.prepare = function (this: unknown, sql: string) {
        const s = prepare.call(this, sql) as Record<string, (...a: unknown[]) => unknown>;
        const key = sql.replace(/\s+/g, ' ').slice(0, 90);
        for (const m of ['run', 'get', 'all'] as const) {
          const f = s[m]!;
          s[m] = (...a: unknown[]) => (count(`sql ${m} ${key}`), f.apply(s, a));
        }
        return s;
      };
    } catch (err) {
      console.error('held-probe: better-sqlite3 not found from', process.argv[1], err);
    }
  }
  // SIGUSR2 starts V8's CPU profiler, the next one writes <out>-<pid>.cpuprofile: a profile of the
  // bench's window alone, without the ramp's handshakes (sent by hand when the bench says "measuring").
  let session: Session | undefined;
  process.on('SIGUSR2', () => {
    if (!session) {
      session = new Session();
      session.connect();
      session.post('Profiler.enable');
      session.post('Profiler.start');
      return;
    }
    const s = session;
    session = undefined;
    s.post('Profiler.stop', (err, r) => {
      if (err) console.error('held-probe: profile', err);
      else writeFileSync(file.replace(/\.jsonl$/, `-${Date.now()}.cpuprofile`), JSON.stringify(r.profile));
      s.disconnect();
    });
  });
  let last = process.cpuUsage();
  const fd = openSync(file, 'a'); // opened once: at the open-files limit a per-second open would fail
  const t = setInterval(() => {
    const cpu = process.cpuUsage(last);
    last = process.cpuUsage();
    const line = {
      t: new Date().toISOString(),
      cpuMs: (cpu.user + cpu.system) / 1000,
      gc,
      gcMaxMs: secMax,
      loopDelayMs: { max: eld.max / 1e6, p99: eld.percentile(99) / 1e6, mean: eld.mean / 1e6 },
      heartbeatsServedMs: latencies(served),
      heapUsedMB: Math.round(v8.getHeapStatistics().used_heap_size / 1048576),
      threads: threadCpu(),
      // The main thread's time waiting for a core while runnable (schedstat's run delay): the other
      // processes' share of the cores (load generators, other work), not the server's own.
      // Bytes this process wrote (write(2) and the like, page cache included): WAL appends, and a
      // checkpoint's copy into the database file as a burst.
      wcharBytes: Number(/wchar: (\d+)/.exec(readProc('/proc/self/io'))?.[1] ?? 0),
      mainRunDelayMs: Number(readProc(`/proc/self/task/${process.pid}/schedstat`).split(' ')[1]) / 1e6,
      counts: Object.fromEntries(counts),
    };
    eld.reset();
    served.length = 0;
    secMax = 0;
    writeSync(fd, `${JSON.stringify(line)}\n`);
  }, 1000);
  t.unref();
}

/**
 * A /proc file, or '' when it cannot be opened: with ~20,000 agents held the server runs at its
 * open-files limit, and an EMFILE thrown from this timer would end the server it measures.
 */
function readProc(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** CPU ms (utime+stime) of each of this process's threads so far, summed by thread name. */
function threadCpu(): Record<string, number> {
  const r: Record<string, number> = {};
  let tids: string[] = [];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return r; // no descriptor left (the open-files limit): this second has no thread figures
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const name = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim().replace(/[0-9]+$/, '');
      r[name] = (r[name] ?? 0) + ((Number(f[11]) + Number(f[12])) * 1000) / 100;
    } catch {
      // the thread ended
    }
  }
  return r;
}

type Line = { t: string; cpuMs: number; gcMaxMs: number; mainRunDelayMs: number; wcharBytes?: number; threads: Record<string, number>; gc: Record<string, { n: number; ms: number; maxMs: number }>; loopDelayMs: { max: number; p99: number }; counts: Record<string, number>; heartbeatsServedMs?: LatencySummary; heapUsedMB?: number };

function summarize(args: string[]) {
  if (args[0] === '--profile') return profile(args[1]!);
  if (args[0] === '--answers') return lateAnswers(args[1]!, args[2]!);
  const [file, from, secs] = args;
  const lines = readFileSync(file!, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Line);
  const t0 = from ? Date.parse(from) : Date.parse(lines[0]!.t);
  const t1 = t0 + Number(secs ?? 30) * 1000;
  const inWin = lines.filter((l) => Date.parse(l.t) > t0 && Date.parse(l.t) <= t1);
  const before = lines.filter((l) => Date.parse(l.t) <= t0).at(-1) ?? { gc: {}, counts: {} } as unknown as Line;
  const after = inWin.at(-1)!;
  const s = inWin.length;
  // Rates are over the time the lines span, not their count: a stalled loop writes fewer lines.
  const start = before.t ? Date.parse(before.t) : Date.parse(inWin[0]!.t) - 1000;
  const elapsed = (Date.parse(after.t) - start) / 1000;
  console.log(`${s} lines over ${elapsed.toFixed(0)} s from ${new Date(t0).toISOString()}; server CPU ${(inWin.reduce((a, l) => a + l.cpuMs, 0) / elapsed).toFixed(1)} ms/s`);
  for (const [k, g] of Object.entries(after.gc)) {
    const b = before.gc[k] ?? { n: 0, ms: 0 };
    console.log(`gc ${k}: ${((g.n - b.n) / elapsed).toFixed(2)}/s, ${((g.ms - b.ms) / elapsed).toFixed(2)} ms/s, longest so far ${g.maxMs.toFixed(1)} ms`);
  }
  const first = before.threads ?? inWin[0]!.threads;
  for (const [k, v] of Object.entries(after.threads ?? {}).sort((a, b) => b[1] - a[1])) console.log(`thread ${k}: ${((v - (first[k] ?? 0)) / elapsed).toFixed(1)} ms/s`);
  if (after.mainRunDelayMs !== undefined) console.log(`main thread waiting for a core while runnable: ${((after.mainRunDelayMs - (before.mainRunDelayMs ?? inWin[0]!.mainRunDelayMs)) / elapsed).toFixed(1)} ms/s`);
  const both = inWin.map((l, i) => {
    const prev = i === 0 ? before : inWin[i - 1]!;
    const mbWritten = l.wcharBytes !== undefined && prev?.wcharBytes !== undefined ? `/${((l.wcharBytes - prev.wcharBytes) / 1e6).toFixed(1)}` : '';
    return `${l.loopDelayMs.max.toFixed(0)}/${(l.gcMaxMs ?? 0).toFixed(0)}${mbWritten}`;
  });
  console.log(`per second, the event loop's longest delay / the longest GC pause (ms) / MB written: ${both.join(' ')}`);
  if (inWin.some((l) => l.heartbeatsServedMs)) {
    const per = inWin.map((l) => `${l.heartbeatsServedMs?.p99 ?? '-'}/${l.heapUsedMB ?? '-'}`);
    console.log(`per second, the heartbeats' p99 inside the server (ms) / V8 heap used (MB): ${per.join(' ')}`);
    const good = inWin.filter((l) => (l.heartbeatsServedMs?.p99 ?? Infinity) <= 10).length;
    console.log(`lines (seconds) whose heartbeats' p99 inside the server was within 10 ms: ${good} of ${s}`);
  }
  const maxes = inWin.map((l) => l.loopDelayMs.max).sort((a, b) => a - b);
  console.log(`event loop delay, max per second: median ${maxes[Math.floor(s / 2)]?.toFixed(1)} ms, worst ${maxes.at(-1)?.toFixed(1)} ms; seconds over 10 ms: ${maxes.filter((m) => m > 10).length}`);
  const rows = Object.entries(after.counts).map(([k, n]) => [k, (n - (before.counts[k] ?? 0)) / elapsed] as const).filter(([, r]) => r > 0).sort((a, b) => b[1] - a[1]);
  for (const [k, r] of rows) console.log(`${r.toFixed(1).padStart(8)}/s  ${k}`);
}

/**
 * The dispatch scenario's late claims (a results file's dispatch.late.rows) beside the server's
 * record of their answers (the probe's -answers.jsonl): for each, when the server ended the stream
 * with the command (after its claim), when the stream closed, and when the load generator stamped
 * it received, relative to the server's end of the stream.
 */
function lateAnswers(answersFile: string, resultsFile: string) {
  const byId = new Map<number, { endAt: number; closeAt: number }>();
  const syncs: { syncStartAt: number; syncEndAt: number }[] = [];
  for (const l of readFileSync(answersFile, 'utf8').trim().split('\n')) {
    const a = JSON.parse(l) as { id: number; endAt: number; closeAt: number } | { syncStartAt: number; syncEndAt: number };
    if ('syncEndAt' in a) syncs.push(a);
    else byId.set(a.id, a);
  }
  // The sync an answer waited for: the last one to end before the server ended the answer's stream.
  const syncBefore = (t: number) => syncs.filter((x) => x.syncEndAt <= t).at(-1);
  const r = JSON.parse(readFileSync(resultsFile, 'utf8')) as { results: { dispatch?: { late?: { rows: { id: number; atS: number; ms: number; serverMs: number | null; receivedAt?: number }[] } } } };
  const rows = r.results.dispatch?.late?.rows ?? [];
  console.log('id      at s   submit→received ms  created→claimed ms (server)  sync before end ms  end→close ms  end→received ms');
  const after: number[] = [];
  for (const row of rows) {
    const a = byId.get(row.id);
    const close = a ? (a.closeAt - a.endAt).toFixed(1) : '-';
    const recv = a && row.receivedAt !== undefined ? row.receivedAt - a.endAt : undefined;
    if (recv !== undefined) after.push(recv);
    const sy = a ? syncBefore(a.endAt) : undefined;
    const sync = sy ? (sy.syncEndAt - sy.syncStartAt).toFixed(1) : '-';
    console.log(`${String(row.id).padEnd(8)}${row.atS.toFixed(1).padStart(5)}  ${String(row.ms).padStart(17)}  ${String(row.serverMs ?? '-').padStart(27)}  ${sync.padStart(18)}  ${close.padStart(12)}  ${recv === undefined ? '-'.padStart(15) : recv.toFixed(0).padStart(15)}`);
  }
  if (after.length) console.log(`end→received over ${after.length} late claims: ${JSON.stringify(latencies(after))}`);
  if (syncs.length) console.log(`every WAL sync recorded (${syncs.length}), ms: ${JSON.stringify(latencies(syncs.map((x) => x.syncEndAt - x.syncStartAt)))}`);
}

interface ProfNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

function profile(file: string) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfNode[]; startTime: number; samples: number[]; timeDeltas: number[] };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const ours = new Map<string, number>();
  let total = 0;
  const name = (n: ProfNode) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(control-plane|common|node_modules)\//, '$1/').replace(/^node:/, 'node:')}:${n.callFrame.lineNumber + 1}`;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0;
    const n = byId.get(p.samples[i]!)!;
    total += dt;
    const k = n.callFrame.url ? name(n) : n.callFrame.functionName;
    self.set(k, (self.get(k) ?? 0) + dt);
    let o: ProfNode | undefined = n;
    while (o && !/\/(control-plane|common)\//.test(o.callFrame.url)) o = byId.get(parent.get(o.id) ?? -1);
    const ok = o ? name(o) : n.callFrame.url ? '(no frame of ours)' : n.callFrame.functionName;
    ours.set(ok, (ours.get(ok) ?? 0) + dt);
  }
  const busy = total - (self.get('(idle)') ?? 0);
  console.log(`${(total / 1e6).toFixed(1)} s profiled, busy ${(busy / 1e6).toFixed(2)} s (${((busy / total) * 100).toFixed(1)} %); shares below are of the busy time`);
  const show = (title: string, m: Map<string, number>) => {
    console.log(`\n${title}`);
    for (const [k, v] of [...m].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`${((v / busy) * 100).toFixed(1).padStart(6)} %  ${(v / 1000).toFixed(0).padStart(7)} ms  ${k}`);
  };
  show('by function (self time)', self);
  show('by nearest frame of ours (control-plane/, common/)', ours);
}
