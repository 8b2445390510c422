/**
 * Figure 6, the durable write rate: the control plane's own repository functions against a real
 * SQLite file (WAL, synchronous NORMAL as the server runs it; FULL for comparison), no HTTP.
 * Run by bench/main.ts as a child process; prints one JSON line. Usage: node bench/storage.ts <dir> <seconds>
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { openDatabase, migrate, type Db } from '../control-plane/db/database.ts';
import { insertAccount, insertCluster } from '../control-plane/db/accounts.repository.ts';
import { flushHeartbeats, insertAgent, recordHeartbeat } from '../control-plane/db/agents.repository.ts';
import { insertCommand, completeAttempt } from '../control-plane/db/commands.repository.ts';
import { claimNext } from '../control-plane/db/claim.ts';
import { openDurability, type Durability } from '../control-plane/db/durability.ts';
import { startCheckpointer } from '../control-plane/db/checkpoint.ts';
import { summarize } from './lib/util.ts';

const dir = process.argv[2] ?? '/tmp/tether-bench-storage';
const seconds = Number(process.argv[3] ?? 5);
const AGENTS = 10_000;
const metricsObject = { cpuPercent: 3.2, memoryTotalBytes: 8_340_000_000, memoryUsedBytes: 2_110_000_000, load: [0.1, 0.2, 0.2], uptimeSeconds: 86400, rssBytes: 48_000_000 };
const metrics = JSON.stringify(metricsObject);

async function fresh(name: string, synchronous: 'NORMAL' | 'FULL') {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.db`);
  for (const s of ['', '-wal', '-shm']) rmSync(file + s, { force: true });
  const prev = process.env.TETHER_SQLITE_SYNCHRONOUS;
  process.env.TETHER_SQLITE_SYNCHRONOUS = synchronous;
  const o = openDatabase(file);
  if (prev === undefined) delete process.env.TETHER_SQLITE_SYNCHRONOUS;
  else process.env.TETHER_SQLITE_SYNCHRONOUS = prev;
  await migrate(o.db);
  const now = Date.now();
  await insertAccount(o.db, { aid: 'bench', name: 'bench', now });
  await o.db.transaction().execute(async (trx) => {
    for (let i = 0; i < AGENTS; i++) {
      const cid = `c${i}`;
      await insertCluster(trx, { aid: 'bench', cid, domain: `${cid}.bench.local`, now });
      await insertAgent(trx, { id: `ca-${String(i).padStart(10, '0')}`, aid: 'bench', cid, role: 'cluster-agent', nid: null, control_plane: 0, created_at: now });
    }
  });
  return o;
}

/** Runs `op` back to back for `secs`; per-call latency (ms) and calls/s. */
async function loop(secs: number, op: (i: number) => Promise<unknown>) {
  const lat: number[] = [];
  const end = performance.now() + secs * 1000;
  let i = 0;
  const t0 = performance.now();
  while (performance.now() < end && i < 5_000_000) {
    const a = performance.now();
    await op(i++);
    lat.push(performance.now() - a);
  }
  return { perSecond: Math.round(i / ((performance.now() - t0) / 1000)), latencyMs: summarize(lat) };
}

const agentId = (i: number) => `ca-${String(i % AGENTS).padStart(10, '0')}`;
/** recordHeartbeat() only queues the write; the commit happens at the batch's flush (see agents.repository.ts). */
const hb = (db: Db, i: number) => recordHeartbeat(db, agentId(i), { now: Date.now(), version: '0.1.0', metrics: metricsObject, vpn: null });
/** One heartbeat, committed on its own. */
const hbCommitted = async (db: Db, i: number) => {
  await hb(db, i);
  flushHeartbeats(db);
};

const out: Record<string, unknown> = { agents: AGENTS, seconds };
{
  const { db, sqlite } = await fresh('normal', 'NORMAL');
  out.heartbeatOnePerCommit = await loop(seconds, (i) => hbCommitted(db, i));
  const BATCH = 200;
  const r = await loop(seconds, async (i) => {
    for (let k = 0; k < BATCH; k++) await hb(db, i * BATCH + k);
    flushHeartbeats(db);
  });
  out.heartbeatBatched = { batch: BATCH, perSecond: r.perSecond * BATCH, commitLatencyMs: r.latencyMs };
  // As the server writes them: queued per call, committed by the batch timer or when the batch is full.
  const cpu0 = process.cpuUsage();
  const served = await loop(seconds, (i) => hb(db, i));
  flushHeartbeats(db);
  const cpu = process.cpuUsage(cpu0);
  out.heartbeatAsServed = { ...served, cpuMicrosPerHeartbeat: Math.round(((cpu.user + cpu.system) / Math.max(1, served.perSecond * seconds)) * 100) / 100 };
  // A command's durable life: submit (insert, one transaction), claim (one UPDATE), result (one UPDATE).
  const submit: number[] = [];
  const claim: number[] = [];
  const complete: number[] = [];
  let n = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  while (performance.now() < end && n < 1_000_000) {
    const cid = `c${n % AGENTS}`;
    const a = performance.now();
    const { row } = await insertCommand(db, { aid: 'bench', cid, nid: null, type: 'manifest', spec: '{"manifests":"kind: Namespace"}', idempotencyKey: null, timeoutSeconds: 600, maxAttempts: 3, now: Date.now() });
    const b = performance.now();
    const leaseId = `l${n}`;
    const claimed = await claimNext(db, { aid: 'bench', cid, nid: null }, { agentId: agentId(n), leaseId, leaseExpiresAt: Date.now() + 30_000, now: Date.now() });
    const c = performance.now();
    if (!claimed || claimed.id !== row.id) throw new Error('claim did not return the submitted command');
    await completeAttempt(db, { id: row.id, agentId: agentId(n), leaseId, now: Date.now() }, { kind: 'final', state: 'succeeded', outputs: null, error: null });
    const d = performance.now();
    submit.push(b - a);
    claim.push(c - b);
    complete.push(d - c);
    n++;
  }
  out.commandLifecycle = { commandsPerSecond: Math.round(n / ((performance.now() - t0) / 1000)), writesPerSecond: Math.round((3 * n) / ((performance.now() - t0) / 1000)), submitMs: summarize(submit), claimMs: summarize(claim), resultMs: summarize(complete) };
  await db.destroy();
  if (sqlite.open) sqlite.close();
}
{
  const { db, sqlite } = await fresh('full', 'FULL');
  out.heartbeatOnePerCommitFull = await loop(Math.min(seconds, 5), (i) => hbCommitted(db, i));
  await db.destroy();
  if (sqlite.open) sqlite.close();
}

/**
 * A command's life with its acknowledgments, as the server answers them: CLIENTS concurrent
 * clients each submit, claim and report, awaiting the durability barrier after every write (the
 * answer). `normal`: no barrier (today's NORMAL); `group-commit`: the barrier (fdatasync of the WAL
 * on the thread pool, shared); `fsync-per-commit`: synchronous=FULL (SQLite syncs every commit).
 */
const CLIENTS = 64;
async function durableLives(method: 'normal' | 'group-commit' | 'fsync-per-commit', checkpoints: 'inline' | 'worker' = 'inline') {
  const name = `durable-${method}-${checkpoints}`;
  const o = await fresh(name, method === 'fsync-per-commit' ? 'FULL' : 'NORMAL');
  const durability: Durability = openDurability({ ...o, file: join(dir, `${name}.db`), mode: method === 'normal' ? 'normal' : 'full' });
  // inline: SQLite's automatic checkpoints in the committing call (wal_autocheckpoint = 4000, as
  // openDatabase sets); worker: the server's checkpoint worker (control-plane/db/checkpoint.ts).
  const checkpointer = startCheckpointer(o.sqlite, join(dir, `${name}.db`), { mode: checkpoints });
  const ack = async () => {
    const w = durability.barrier();
    if (w) await w;
  };
  const lat: number[] = [];
  const life: number[] = [];
  let n = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + Math.min(seconds, 5) * 1000;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, k) => {
      while (performance.now() < end) {
        const cid = `c${(n * CLIENTS + k) % AGENTS}`;
        const a = performance.now();
        const { row } = await insertCommand(o.db, { aid: 'bench', cid, nid: null, type: 'manifest', spec: '{"manifests":"kind: Namespace"}', idempotencyKey: null, timeoutSeconds: 600, maxAttempts: 3, now: Date.now() });
        await ack();
        const b = performance.now();
        const leaseId = `l${k}-${n}`;
        const agent = `ca-${cid.slice(1).padStart(10, '0')}`;
        const claimed = await claimNext(o.db, { aid: 'bench', cid, nid: null }, { agentId: agent, leaseId, leaseExpiresAt: Date.now() + 30_000, now: Date.now() });
        await ack();
        if (!claimed) throw new Error('nothing claimed');
        await completeAttempt(o.db, { id: claimed.id, agentId: agent, leaseId, now: Date.now() }, { kind: 'final', state: 'succeeded', outputs: null, error: null });
        await ack();
        lat.push(b - a);
        life.push(performance.now() - a);
        n++;
        void row;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const st = durability.stats();
  const cp = checkpointer.stats();
  await checkpointer.stop();
  durability.close();
  await o.db.destroy();
  if (o.sqlite.open) o.sqlite.close();
  return {
    clients: CLIENTS,
    commandsPerSecond: Math.round(n / secs),
    submitAckMs: summarize(lat),
    /** Submit, claim and result, each acknowledged: a command's whole life as its clients wait for it. */
    lifeMs: summarize(life),
    checkpoints,
    ...(checkpoints === 'worker' ? { checkpointPasses: cp.passive, checkpointWorkerMs: Math.round(cp.ms) } : {}),
    /** Process CPU (all threads, the checkpoint worker's included). */
    cpuMsPerCommand: Math.round(((cpu.user + cpu.system) / 1000 / Math.max(1, n)) * 1000) / 1000,
    syncs: st.syncs,
    acksPerSync: st.syncs ? Math.round((st.waiters / st.syncs) * 10) / 10 : null,
  };
}
out.durableLives = {
  normal: await durableLives('normal'),
  groupCommit: await durableLives('group-commit'),
  groupCommitCheckpointWorker: await durableLives('group-commit', 'worker'),
  fsyncPerCommit: await durableLives('fsync-per-commit'),
};
process.stdout.write(`${JSON.stringify(out)}\n`);
