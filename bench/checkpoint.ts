/**
 * Checkpoints on the request path or off it (issue 18, control-plane/db/checkpoint.ts): the
 * acknowledged command lives of bench/storage.ts (64 clients, submit/claim/result each answered
 * after the group-commit barrier) for `seconds` per run, with SQLite's automatic checkpoints alone
 * in the committing call (`inline`, wal_autocheckpoint = 4000) or with the checkpoint worker copying
 * the WAL beside them (`worker`, as the server runs), runs alternated. Reports, per run: commands/s, the main thread's CPU per command (what bounds the
 * server) and the process's, the event loop's delay (p99, max: a checkpoint in a commit stalls
 * every request), each life's latency, the largest WAL file and the checkpoint passes.
 *
 * Usage: node bench/checkpoint.ts [dir] [seconds per run, default 15] [rounds, default 2]
 * (inside `flock` on a shared machine; prints a table and one JSON line).
 */
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { openDatabase, migrate } from '../control-plane/db/database.ts';
import { insertAccount, insertCluster } from '../control-plane/db/accounts.repository.ts';
import { insertAgent } from '../control-plane/db/agents.repository.ts';
import { insertCommand, completeAttempt } from '../control-plane/db/commands.repository.ts';
import { claimNext } from '../control-plane/db/claim.ts';
import { openDurability } from '../control-plane/db/durability.ts';
import { startCheckpointer } from '../control-plane/db/checkpoint.ts';
import { loadAverage, summarize } from './lib/util.ts';

const dir = process.argv[2] ?? '/tmp/tether-bench-checkpoint';
const seconds = Number(process.argv[3] ?? 15);
const rounds = Number(process.argv[4] ?? 2);
const CLIENTS = 64;
const CLUSTERS = 1000;

/** The main thread's utime+stime (ms), from /proc (the thread whose id is the process's). */
function mainThreadCpuMs(): number {
  const s = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10; // clock ticks of 10 ms
}

async function run(mode: 'inline' | 'worker', k: number) {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `checkpoint-${mode}-${k}.db`);
  for (const s of ['', '-wal', '-shm']) rmSync(file + s, { force: true });
  const o = openDatabase(file);
  await migrate(o.db);
  const now = Date.now();
  await insertAccount(o.db, { aid: 'bench', name: 'bench', now });
  await o.db.transaction().execute(async (trx) => {
    for (let i = 0; i < CLUSTERS; i++) {
      await insertCluster(trx, { aid: 'bench', cid: `c${i}`, domain: `c${i}.bench.local`, now });
      await insertAgent(trx, { id: `ca-${String(i).padStart(10, '0')}`, aid: 'bench', cid: `c${i}`, role: 'cluster-agent', nid: null, control_plane: 0, created_at: now });
    }
  });
  const durability = openDurability({ ...o, file, mode: 'full' });
  const checkpointer = startCheckpointer(o.sqlite, file, { mode });
  const ack = async () => {
    const w = durability.barrier();
    if (w) await w;
  };
  const life: number[] = [];
  let n = 0;
  let maxWal = 0;
  const walTimer = setInterval(() => {
    try {
      maxWal = Math.max(maxWal, statSync(`${file}-wal`).size);
    } catch {}
  }, 100);
  const loop = monitorEventLoopDelay({ resolution: 1 });
  const cpu0 = process.cpuUsage();
  const main0 = mainThreadCpuMs();
  loop.enable();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      while (performance.now() < end) {
        const i = (n * CLIENTS + c) % CLUSTERS;
        const cid = `c${i}`;
        const agent = `ca-${String(i).padStart(10, '0')}`;
        const a = performance.now();
        await insertCommand(o.db, { aid: 'bench', cid, nid: null, type: 'manifest', spec: '{"manifests":"kind: Namespace"}', idempotencyKey: null, timeoutSeconds: 600, maxAttempts: 3, now: Date.now() });
        await ack();
        const leaseId = `l${c}-${n}`;
        const claimed = await claimNext(o.db, { aid: 'bench', cid, nid: null }, { agentId: agent, leaseId, leaseExpiresAt: Date.now() + 30_000, now: Date.now() });
        await ack();
        if (claimed) {
          await completeAttempt(o.db, { id: claimed.id, agentId: agent, leaseId, now: Date.now() }, { kind: 'final', state: 'succeeded', outputs: null, error: null });
          await ack();
        }
        life.push(performance.now() - a);
        n++;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  loop.disable();
  const cpu = process.cpuUsage(cpu0);
  const mainMs = mainThreadCpuMs() - main0;
  clearInterval(walTimer);
  const cp = checkpointer.stats();
  await checkpointer.stop();
  durability.close();
  await o.db.destroy();
  if (o.sqlite.open) o.sqlite.close();
  for (const s of ['', '-wal', '-shm']) rmSync(file + s, { force: true });
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  return {
    mode,
    commands: n,
    commandsPerSecond: Math.round(n / secs),
    mainThreadCpuMsPerCommand: r3(mainMs / n),
    processCpuMsPerCommand: r3((cpu.user + cpu.system) / 1000 / n),
    eventLoopDelayMs: { p99: r3(loop.percentile(99) / 1e6), max: r3(loop.max / 1e6) },
    lifeMs: summarize(life),
    maxWalMB: Math.round((maxWal / 1048576) * 10) / 10,
    ...(mode === 'worker' ? { checkpointPasses: cp.passive, checkpointWorkerMs: Math.round(cp.ms) } : {}),
  };
}

const loadStart = loadAverage();
const results = [];
for (let k = 0; k < rounds; k++) for (const mode of ['inline', 'worker'] as const) results.push(await run(mode, k));
const loadEnd = loadAverage();
process.stderr.write(`load ${loadStart.join(' ')} -> ${loadEnd.join(' ')}; ${seconds} s per run, ${CLIENTS} clients\n`);
for (const r of results) {
  process.stderr.write(
    `${r.mode.padEnd(7)} ${String(r.commandsPerSecond).padStart(6)} commands/s  main thread ${r.mainThreadCpuMsPerCommand} ms/cmd  process ${r.processCpuMsPerCommand} ms/cmd  ` +
      `event loop delay p99 ${r.eventLoopDelayMs.p99} ms max ${r.eventLoopDelayMs.max} ms  life p99 ${r.lifeMs.p99} max ${r.lifeMs.max} ms  WAL ≤ ${r.maxWalMB} MB\n`,
  );
}
process.stdout.write(`${JSON.stringify({ loadStart, loadEnd, seconds, clients: CLIENTS, results })}\n`);
