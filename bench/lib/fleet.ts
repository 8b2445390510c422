/** The load-generator processes: forked with a raised open-files limit, driven over IPC. */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { LoadgenStart, LoadgenStats } from '../loadgen.ts';
import { NOFILE } from './server.ts';
import { REPO_ROOT, sleep } from './util.ts';

export class Fleet {
  readonly procs: ChildProcess[] = [];
  readonly size: number;
  private constructor(size: number) {
    this.size = size;
  }

  static async start(o: Omit<LoadgenStart, 'type' | 'from' | 'to'> & { agents: number; perProcess: number; offset?: number }): Promise<Fleet> {
    const f = new Fleet(o.agents);
    const offset = o.offset ?? 0;
    for (let from = 0; from < o.agents; from += o.perProcess) {
      const to = Math.min(o.agents, from + o.perProcess);
      // prlimit as the launcher: the child gets the raised open-files limit (soft = hard).
      const p = fork(join(REPO_ROOT, 'bench/loadgen.ts'), [], {
        execPath: 'prlimit',
        execArgv: [`--nofile=${NOFILE}:${NOFILE}`, '--', process.execPath, '--max-old-space-size=4096'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      f.procs.push(p);
      const started = once(p, 'started');
      const { agents: _a, perProcess: _p, offset: _o, ...rest } = o;
      p.send({ ...rest, type: 'start', from: offset + from, to: offset + to } satisfies LoadgenStart);
      await started;
    }
    return f;
  }

  async stats(reset = false): Promise<LoadgenStats> {
    const all = await Promise.all(
      this.procs.map((p) => {
        const r = once<LoadgenStats>(p, 'stats');
        p.send({ type: 'report', reset });
        return r;
      }),
    );
    const sum: LoadgenStats = { type: 'stats', agents: 0, healthy: 0, connected: 0, hbOk: 0, hbErr: 0, hbLatency: [], pollOk: 0, pollErr: 0, claims: [], resultsOk: 0, resultsErr: 0, resultDone: [], recoveredHb: [], recoveredPoll: [], tlsConnects: 0, tlsResumed: 0, retryAfterWaits: 0, errors: {} };
    for (const s of all) {
      for (const k of ['agents', 'healthy', 'connected', 'hbOk', 'hbErr', 'pollOk', 'pollErr', 'resultsOk', 'resultsErr', 'tlsConnects', 'tlsResumed', 'retryAfterWaits'] as const) sum[k] += s[k];
      for (const k of ['hbLatency', 'claims', 'resultDone', 'recoveredHb', 'recoveredPoll'] as const) (sum[k] as unknown[]).push(...(s[k] as unknown[]));
      for (const [k, v] of Object.entries(s.errors)) sum.errors[k] = (sum.errors[k] ?? 0) + v;
    }
    return sum;
  }

  async mark(): Promise<void> {
    await Promise.all(
      this.procs.map((p) => {
        const r = once(p, 'marked');
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
            if (p.exitCode !== null || p.signalCode !== null) return r();
            const t = setTimeout(() => p.kill('SIGKILL'), 5000);
            p.once('exit', () => {
              clearTimeout(t);
              r();
            });
            p.send({ type: 'stop' });
          }),
      ),
    );
  }
}

function once<T = unknown>(p: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMsg = (m: { type?: string }) => {
      if (m?.type === type) {
        p.off('message', onMsg);
        p.off('exit', onExit);
        resolve(m as T);
      }
    };
    const onExit = (code: number | null) => {
      p.off('message', onMsg);
      reject(new Error(`a load generator exited (${code}) while waiting for ${type}`));
    };
    p.on('message', onMsg);
    p.once('exit', onExit);
  });
}
