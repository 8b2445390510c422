/**
 * A PostgreSQL started by the bench, as test/support/postgres.ts starts one (Debian's package,
 * a temp folder, a loopback port, a scram password, as the `postgres` user when run as root), but
 * durable by default: fsync, synchronous_commit and full_page_writes on, PostgreSQL's defaults,
 * so a commit is on disk before the control plane answers, as with SQLite's durability barrier.
 * `durable: false` turns the three off (the tests' settings). Plus its CPU time, summed over the
 * postmaster and its processes, from /proc.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { freePort } from './net.ts';
import { sleep } from './util.ts';

export interface BenchPostgres {
  pid: number;
  durable: boolean;
  version: string;
  /** A new empty database; its URL (password included: never print it). */
  database(name: string): Promise<string>;
  /** CPU ms of each process of the tree now (the postmaster's own plus its reaped children's). */
  cpuSample(): Map<number, number>;
  /** Memory (bytes) of its processes: PSS summed (shared buffers split between the processes that map them, so counted once). */
  pssBytes(): number;
  stop(): Promise<void>;
}

function binDir(): string {
  if (process.env.TETHER_PG_BIN) return process.env.TETHER_PG_BIN;
  const root = '/usr/lib/postgresql';
  const v = existsSync(root) ? readdirSync(root).filter((x) => existsSync(join(root, x, 'bin', 'postgres'))).sort((a, b) => Number(b) - Number(a))[0] : undefined;
  if (!v) throw new Error('PostgreSQL is not installed (Debian package postgresql; or set TETHER_PG_BIN)');
  return join(root, v, 'bin');
}

function asUser(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}

const CLK_TCK = 100;

/** pid → [ppid, own CPU ms, reaped children's CPU ms, RSS bytes] of every process, from /proc. */
function processes(): Map<number, [number, number, number, number]> {
  const m = new Map<number, [number, number, number, number]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // f[0] is field 3; ppid field 4, utime 14, stime 15, cutime 16, cstime 17, rss (pages) 24.
      const own = ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
      const reaped = ((Number(f[13]) + Number(f[14])) * 1000) / CLK_TCK;
      m.set(Number(d), [Number(f[1]), own, reaped, Number(f[21]) * 4096]);
    } catch {
      /* gone meanwhile */
    }
  }
  return m;
}

export async function startPostgres(o: { durable: boolean }): Promise<BenchPostgres> {
  const bin = binDir();
  const user = asUser();
  const dir = mkdtempSync(join(tmpdir(), 'tether-bench-pg-'));
  const data = join(dir, 'data');
  const password = randomBytes(12).toString('hex');
  writeFileSync(join(dir, 'pw'), `${password}\n`, { mode: 0o600 });
  if (user.uid !== undefined) chownSync(dir, user.uid, user.gid!), chownSync(join(dir, 'pw'), user.uid, user.gid!);
  chmodSync(dir, 0o700);
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-U', 'tether', '--pwfile', join(dir, 'pw'), '--auth=scram-sha-256', '-E', 'UTF8', '--locale=C', ...(o.durable ? [] : ['--no-sync'])], { ...user, encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}${init.stdout}`);
  const onOff = o.durable ? 'on' : 'off';
  const port = await freePort();
  const proc: ChildProcess = spawn(
    join(bin, 'postgres'),
    ['-D', data, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${dir}`, '-c', `fsync=${onOff}`, '-c', `synchronous_commit=${onOff}`, '-c', `full_page_writes=${onOff}`, '-c', 'max_connections=200'],
    { ...user, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const cleanup = () => {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', cleanup);
  const deadline = Date.now() + 30_000;
  while (!out.includes('ready to accept connections')) {
    if (proc.exitCode !== null) throw new Error(`postgres exited (${proc.exitCode}):\n${out}`);
    if (Date.now() > deadline) throw new Error(`postgres not ready within 30 s:\n${out}`);
    await sleep(50);
  }
  const url = (db: string) => `postgres://tether:${password}@127.0.0.1:${port}/${db}`;
  const version = spawnSync(join(bin, 'postgres'), ['--version'], { encoding: 'utf8' }).stdout.trim();
  const pid = proc.pid!;
  const tree = () => {
    const all = processes();
    return [...all].filter(([p, [ppid]]) => p === pid || ppid === pid);
  };
  return {
    pid,
    durable: o.durable,
    version,
    async database(name) {
      if (!/^[a-z][a-z0-9_]{0,40}$/.test(name)) throw new Error(`bad database name ${name}`);
      const c = new pg.Client({ connectionString: url('postgres') });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${name}`);
      } finally {
        await c.end();
      }
      return url(name);
    },
    cpuSample() {
      return new Map(tree().map(([p, [, own, reaped]]) => [p, p === pid ? own + reaped : own]));
    },
    pssBytes() {
      let kb = 0;
      for (const [p] of tree()) {
        try {
          kb += Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${p}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
        } catch {
          /* gone meanwhile */
        }
      }
      return kb * 1024;
    },
    async stop() {
      process.off('exit', cleanup);
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('close', r));
        proc.kill('SIGINT'); // fast shutdown
        const t = setTimeout(() => proc.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
