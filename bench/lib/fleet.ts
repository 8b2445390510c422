/**
 * The load-generator processes: started with a raised open-files limit and driven with the same
 * messages (start, report, mark, stop → started, stats, marked) whichever kind they are:
 * - `node`: bench/loadgen.ts forked, over Node's IPC channel, `perProcess` agents each;
 * - `go`: bench/loadgen-go/ (built once into the bench cache by its build.sh), newline-delimited
 *   JSON over stdin/stdout; one process for the whole fleet (its goroutines use every core).
 */
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import type { LoadgenStart, LoadgenStats, ParentMessage } from '../loadgen.ts';
import { NOFILE } from './server.ts';
import { REPO_ROOT, procSample, sleep } from './util.ts';

export type LoadgenKind = 'node' | 'go';

/** `npm run bench`'s --loadgen: the Go load generator unless `node` is asked (docs/performance.md, A load generator in Go). */
export function parseLoadgenKind(s: string | undefined): LoadgenKind {
  if (s === undefined || s === 'node' || s === 'go') return s ?? 'go';
  throw new Error(`--loadgen must be node or go (got ${s})`);
}

let goBinary: string | undefined;
/** The Go load generator's binary: built when its sources changed (bench/loadgen-go/build.sh), else the cached one. */
export function loadgenGoBinary(): string {
  if (goBinary) return goBinary;
  const r = spawnSync('bash', [join(REPO_ROOT, 'bench/loadgen-go/build.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`bench/loadgen-go/build.sh failed (exit ${r.status})`);
  goBinary = r.stdout.trim();
  return goBinary;
}

/** One load generator, whichever kind: messages in, messages out. */
class LoadgenProc {
  readonly child: ChildProcess;
  private readonly listeners = new Set<(m: { type?: string }) => void>();
  constructor(kind: LoadgenKind) {
    if (kind === 'node') {
      // prlimit as the launcher: the child gets the raised open-files limit (soft = hard); it exec's, so the pid is node's.
      this.child = fork(join(REPO_ROOT, 'bench/loadgen.ts'), [], {
        execPath: 'prlimit',
        execArgv: [`--nofile=${NOFILE}:${NOFILE}`, '--', process.execPath, '--max-old-space-size=4096'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      this.child.on('message', (m: { type?: string }) => this.emit(m));
    } else {
      // GOMAXPROCS=1 unless set: on these 2 cores one P costs ~26 % less CPU per heartbeat than two
      // (0.167 against 0.226 ms at 1,000 agents × 1/s: fewer threads woken and spinning) and keeps up.
      // Its GC off, bounded by GOMEMLIMIT=6GiB (unless GOGC or GOMEMLIMIT is set): one process
      // simulating 10,000 agents holds ~310-370 MB live (20,000: ~800 MB; a real agent holds its own
      // few MB), and each GC cycle's mark assists stalled the goroutines that allocate (those
      // receiving a claim, sending a heartbeat) for up to ~1.1 s, a stall no real fleet has: with
      // Go's default GOGC=100, submit → claim p99 875 and 1,016 ms at 10,000 held (2 cycles, 1.2-1.3 s
      // of assists in the window), 68 ms twice with GOGC=400 and no cycle, the server having
      // answered in time (bench/held-probe.ts --answers); with 400 a cycle still came in some
      // windows (heartbeat p99 493 ms in one, 85-110 ms in those without). The results report the
      // cycles in the window (loadgenGc; docs/performance.md, issue 18).
      const gcEnv = process.env.GOGC || process.env.GOMEMLIMIT ? {} : { GOGC: 'off', GOMEMLIMIT: '6GiB' };
      const env = { ...process.env, GOMAXPROCS: process.env.GOMAXPROCS ?? '1', ...gcEnv };
      this.child = spawn('prlimit', [`--nofile=${NOFILE}:${NOFILE}`, '--', loadgenGoBinary()], { stdio: ['pipe', 'pipe', 'inherit'], env });
      this.child.stdin!.on('error', () => undefined); // a write after it exited: its exit is what is reported
      createInterface({ input: this.child.stdout! }).on('line', (l) => this.emit(JSON.parse(l) as { type?: string }));
    }
  }
  get pid(): number {
    return this.child.pid!;
  }
  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }
  send(m: ParentMessage | LoadgenStart): void {
    if (this.child.stdin) this.child.stdin.write(`${JSON.stringify(m)}\n`);
    else this.child.send(m);
  }
  private emit(m: { type?: string }): void {
    for (const l of [...this.listeners]) l(m);
  }
  once<T = unknown>(type: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const onMsg = (m: { type?: string }) => {
        if (m?.type === type) {
          this.listeners.delete(onMsg);
          this.child.off('exit', onExit);
          resolve(m as T);
        }
      };
      const onExit = (code: number | null) => {
        this.listeners.delete(onMsg);
        reject(new Error(`a load generator exited (${code}) while waiting for ${type}`));
      };
      this.listeners.add(onMsg);
      this.child.once('exit', onExit);
    });
  }
}

export class Fleet {
  readonly procs: LoadgenProc[] = [];
  readonly size: number;
  readonly kind: LoadgenKind;
  private constructor(size: number, kind: LoadgenKind) {
    this.size = size;
    this.kind = kind;
  }

  static async start(o: Omit<LoadgenStart, 'type' | 'from' | 'to'> & { agents: number; perProcess: number; offset?: number; loadgen?: LoadgenKind }): Promise<Fleet> {
    const kind = o.loadgen ?? 'node';
    const f = new Fleet(o.agents, kind);
    const offset = o.offset ?? 0;
    const perProcess = kind === 'go' ? Math.max(1, o.agents) : o.perProcess;
    const { agents: _a, perProcess: _p, offset: _o, loadgen: _l, ...rest } = o;
    for (let from = 0; from < o.agents; from += perProcess) {
      const to = Math.min(o.agents, from + perProcess);
      const p = new LoadgenProc(kind);
      f.procs.push(p);
      const started = p.once('started');
      p.send({ ...rest, type: 'start', from: offset + from, to: offset + to } satisfies LoadgenStart);
      await started;
    }
    return f;
  }

  /** The load generators' own CPU time so far (utime+stime from /proc, ms), summed. */
  cpuMs(): number {
    return this.procs.reduce((n, p) => n + (procSample(p.pid)?.cpuMs ?? 0), 0);
  }

  async stats(reset = false): Promise<LoadgenStats> {
    const all = await Promise.all(
      this.procs.map((p) => {
        const r = p.once<LoadgenStats>('stats');
        p.send({ type: 'report', reset });
        return r;
      }),
    );
    const sum: LoadgenStats = { type: 'stats', agents: 0, healthy: 0, connected: 0, hbOk: 0, hbErr: 0, hbLatency: [], pollOk: 0, pollErr: 0, claims: [], resultsOk: 0, resultsErr: 0, resultRequests: 0, resultNext: 0, resultDone: [], recoveredHb: [], recoveredPoll: [], tlsConnects: 0, tlsResumed: 0, retryAfterWaits: 0, errors: {} };
    for (const s of all) {
      for (const k of ['agents', 'healthy', 'connected', 'hbOk', 'hbErr', 'pollOk', 'pollErr', 'resultsOk', 'resultsErr', 'resultRequests', 'resultNext', 'tlsConnects', 'tlsResumed', 'retryAfterWaits'] as const) sum[k] += s[k];
      for (const k of ['hbLatency', 'claims', 'resultDone', 'recoveredHb', 'recoveredPoll'] as const) (sum[k] as unknown[]).push(...(s[k] as unknown[]));
      for (const [k, v] of Object.entries(s.errors)) sum.errors[k] = (sum.errors[k] ?? 0) + v;
      if (s.gc) {
        sum.gc ??= { cycles: 0, cpuMs: 0, assistCpuMs: 0, heapLiveMB: 0 };
        for (const k of ['cycles', 'cpuMs', 'assistCpuMs', 'heapLiveMB'] as const) sum.gc[k] += s.gc[k];
      }
    }
    return sum;
  }

  async mark(): Promise<void> {
    await Promise.all(
      this.procs.map((p) => {
        const r = p.once('marked');
        p.send({ type: 'mark' });
        return r;
      }),
    );
  }

  /** Waits until every simulated agent had a successful request and its last heartbeat succeeded. */
  async waitConnected(timeoutMs: number, log: (s: string) => void): Promise<LoadgenStats> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.stats();
      if (s.connected >= this.size && s.healthy >= this.size) return s;
      if (Date.now() > deadline) {
        log(`  only ${s.connected}/${this.size} connected (${s.healthy} healthy) after ${timeoutMs / 1000} s; errors ${JSON.stringify(s.errors)}`);
        return s;
      }
      await sleep(1000);
    }
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.procs.map(
        (p) =>
          new Promise<void>((r) => {
            if (p.exited) return r();
            const t = setTimeout(() => p.child.kill('SIGKILL'), 5000);
            p.child.once('exit', () => {
              clearTimeout(t);
              r();
            });
            p.send({ type: 'stop' });
          }),
      ),
    );
  }
}
