/**
 * The control plane under test: `tether server` as its own process (SQLite and CA in the bench
 * data folder, mTLS on 127.0.0.1), started through prlimit with a raised file-descriptor limit,
 * its log written to a file. Plus an admin client for it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { HttpClient } from '../../common/http-client.ts';
import { REPO_ROOT, sleep } from './util.ts';
import { freePort } from './net.ts';
import { onCpus, PINNING } from './pin.ts';

import { spawnSync } from 'node:child_process';

export const NOFILE_WANTED = 1_048_576;

/**
 * The open-files limit spawned processes get: 1,048,576 where the launcher may raise the hard
 * limit (root with CAP_SYS_RESOURCE, like LimitNOFILE= in a systemd unit), else the hard limit.
 */
export const NOFILE: number = (() => {
  if (spawnSync('prlimit', [`--nofile=${NOFILE_WANTED}:${NOFILE_WANTED}`, '--', 'true']).status === 0) return NOFILE_WANTED;
  const r = spawnSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' });
  const hard = Number(r.stdout.trim());
  return Number.isFinite(hard) && hard > 0 ? hard : 1024;
})();

/** The command line prefix that raises the open-files limit of a spawned process (prlimit, soft = hard = NOFILE). */
export function withNofile(cmd: string, args: string[]): [string, string[]] {
  return ['prlimit', [`--nofile=${NOFILE}:${NOFILE}`, '--', cmd, ...args]];
}

export interface BenchServer {
  proc: ChildProcess;
  pid: number;
  url: string;
  port: number;
  dataDir: string;
  caPem: string;
  adminToken: string;
  /**
   * FULL: every answer waits until its write is on disk (power-loss durable); NORMAL: a commit is a
   * WAL append (kill -9 durable only; also every control plane older than the durability option).
   * `method`: how FULL is done (group-commit, fsync-per-commit with TETHER_SQLITE_SYNCHRONOUS=FULL).
   */
  durability: { mode: 'FULL' | 'NORMAL'; method: string };
  admin: HttpClient;
  /** Reads /metrics: the metrics token of the data folder (a server without one serves /metrics to the admin token). */
  metrics: HttpClient;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * `adminToken`: for a replica on PostgreSQL whose data folder has none (the admin token is written
 * to the folder of the replica that created the account only).
 */
const BENCH_AGENT_RATES = ['heartbeat', 'poll', 'result', 'logs', 'other'].map((c) => `${c}=1000000/10000000`).join(',');

export async function startServer(o: { dataDir: string; port: number; logFile: string; extraArgs?: string[]; env?: NodeJS.ProcessEnv; nodeArgs?: string[]; adminToken?: string }): Promise<BenchServer> {
  mkdirSync(o.dataDir, { recursive: true });
  const fd = openSync(o.logFile, 'a');
  // Started as deployed: `tether server` (bin/tether sets the control plane's Node flags); extra
  // Node flags for a run (profiling, experiments) go through NODE_OPTIONS.
  // The bench is the operator: its admin and metrics clients use an address of their own
  // (--admin-listen), as an operator of a large fleet would, so that a server whose agents' accept
  // queue is full still answers them (docs/performance.md, "The 20,000-agent ramp that locks out
  // its operator"). BENCH_ADMIN_LISTEN=off: the agents' address (and a server older than the flag).
  const adminPort = process.env.BENCH_ADMIN_LISTEN === 'off' ? undefined : await freePort();
  // BENCH_PIN=split: on the control plane's own CPU (bench/lib/pin.ts); taskset and prlimit exec, so the pid is node's.
  const [cmd, args] = onCpus(PINNING?.server, ...withNofile('bash', [join(process.env.BENCH_SERVER_ROOT ?? REPO_ROOT, 'bin/tether'), 'server', '--data-dir', o.dataDir, '--listen', `127.0.0.1:${o.port}`, ...(adminPort ? ['--admin-listen', `127.0.0.1:${adminPort}`] : []), ...(o.extraArgs ?? [])]));
  const nodeOptions = [process.env.NODE_OPTIONS, ...(o.nodeArgs ?? [])].filter(Boolean).join(' ');
  const proc = spawn(cmd, args, {
    // A few simulated agents each send far more than a real agent would (thousands of heartbeats or
    // commands a second): each agent's request rate is checked, as deployed, but never reached
    // (TETHER_AGENT_RATE_LIMITS in the bench's environment wins: `off` to compare without it).
    env: { ...process.env, TETHER_LOG_LEVEL: process.env.BENCH_SERVER_LOG_LEVEL ?? 'info', TETHER_AGENT_RATE_LIMITS: process.env.TETHER_AGENT_RATE_LIMITS ?? BENCH_AGENT_RATES, ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}), ...o.env },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const url = `https://127.0.0.1:${o.port}`;
  const deadline = Date.now() + 60_000;
  let caPem = '';
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`the control plane exited (${proc.exitCode}); see ${o.logFile}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`the control plane was not ready within 60 s; see ${o.logFile}`);
    }
    try {
      caPem = readFileSync(join(o.dataDir, 'ca.crt'), 'utf8');
      const probe = new HttpClient({ baseUrl: url, ca: caPem, timeoutMs: 1000 });
      try {
        await probe.request('GET', '/healthz');
        break;
      } finally {
        probe.close();
      }
    } catch {
      await sleep(100);
    }
  }
  const adminToken = o.adminToken ?? readFileSync(join(o.dataDir, 'admin-token'), 'utf8').trim();
  const adminUrl = adminPort ? `https://127.0.0.1:${adminPort}` : url;
  const admin = new HttpClient({ baseUrl: adminUrl, ca: caPem, bearerToken: adminToken, timeoutMs: 60_000 });
  const durability = await readDurability(o.logFile);
  let metricsToken = adminToken;
  try {
    metricsToken = readFileSync(join(o.dataDir, 'metrics-token'), 'utf8').trim();
  } catch {
    /* an older control plane: /metrics without a token of its own */
  }
  const metrics = new HttpClient({ baseUrl: adminUrl, ca: caPem, bearerToken: metricsToken, timeoutMs: 60_000 });
  return {
    proc,
    pid: proc.pid!,
    url,
    port: o.port,
    dataDir: o.dataDir,
    caPem,
    adminToken,
    durability,
    admin,
    metrics,
    async stop(signal = 'SIGTERM') {
      admin.close();
      metrics.close();
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** The durability the server logged in its last "control plane ready" line (none logged: NORMAL, an older server). */
async function readDurability(logFile: string): Promise<BenchServer['durability']> {
  for (let i = 0; i < 40; i++) {
    const ready = readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"control plane ready"')).at(-1);
    if (ready) {
      const line = JSON.parse(ready) as { durability?: string; durabilityMethod?: string };
      return line.durability === 'full' ? { mode: 'FULL', method: line.durabilityMethod ?? 'group-commit' } : { mode: 'NORMAL', method: 'none' };
    }
    await sleep(50);
  }
  return { mode: 'NORMAL', method: 'unknown (no ready line logged)' };
}

/** Reads one Prometheus sample (first match) from /metrics. */
export async function metric(s: BenchServer, name: string, labels = ''): Promise<number> {
  const text = (await s.metrics.request<string>('GET', `/metrics?name=${encodeURIComponent(name)}`)).body;
  const re = new RegExp(`^${name}${labels ? `\\{${labels.replace(/[{}]/g, '')}\\}` : ''}\\s+([0-9.eE+-]+)$`, 'm');
  const m = re.exec(typeof text === 'string' ? text : '');
  return m ? Number(m[1]) : NaN;
}
