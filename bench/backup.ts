/**
 * Figure 7, backup under load: a real `tether server` whose database holds `commands` finished
 * commands with logs (filled through the repository functions while it is stopped), submissions
 * going on over HTTP from this process while `tether backup` (a third process) copies it; then
 * `tether restore` of that file. Reports sizes, durations, the submit latency before and during the
 * backup, and whether every command acknowledged before the backup is in the restored database.
 * Run by bench/main.ts (`--only backup`) as a child process; prints one JSON line.
 * Usage: node bench/backup.ts <dir> <commands>
 */
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { openDatabase } from '../control-plane/db/database.ts';
import { insertCommand, completeAttempt } from '../control-plane/db/commands.repository.ts';
import { claimNext } from '../control-plane/db/claim.ts';
import { appendLogs } from '../control-plane/db/logs.repository.ts';
import { startServer } from './lib/server.ts';
import { freePort } from './lib/net.ts';
import { REPO_ROOT, mb, sleep, summarize } from './lib/util.ts';

const dir = process.argv[2] ?? '/tmp/tether-bench-backup';
const COMMANDS = Number(process.argv[3] ?? 50_000);
const LOG_LINE = `${'x'.repeat(200)} applied`;
const SUBMITTERS = 4;

rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const dataDir = join(dir, 'data');
const log = (m: string) => process.stderr.write(`[backup] ${m}\n`);

function tether(args: string[]): Promise<{ code: number | null; ms: number; out: string }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const p = spawn('bash', [join(REPO_ROOT, 'bin/tether'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code) => resolve({ code, ms: Math.round(performance.now() - t0), out }));
  });
}

// 1. A data folder with an account, a cluster and COMMANDS finished commands with 4 log lines each.
let s = await startServer({ dataDir, port: await freePort(), logFile: join(dir, 'server.log') });
await s.admin.request('POST', '/v1/clusters', { cid: 'bench1' });
const { aid } = (await s.admin.request<{ aid: string }>('GET', '/v1/whoami')).body;
await s.stop();
{
  const { db, sqlite } = openDatabase(join(dataDir, 'tether.db'));
  const t0 = performance.now();
  for (let i = 0; i < COMMANDS; i++) {
    const now = Date.now();
    const { row } = await insertCommand(db, { aid, cid: 'bench1', nid: null, type: 'manifest', spec: '{"manifests":"kind: Namespace"}', idempotencyKey: null, timeoutSeconds: 600, maxAttempts: 3, now });
    const leaseId = `l${i}`;
    await claimNext(db, { aid, cid: 'bench1', nid: null }, { agentId: 'bench-agent', leaseId, leaseExpiresAt: now + 30_000, now });
    await appendLogs(db, row.id, [0, 1, 2, 3].map((k) => ({ ts: now, stream: 'stdout', text: `${k} ${LOG_LINE}` })), 10 * 1024 * 1024);
    await completeAttempt(db, { id: row.id, agentId: 'bench-agent', leaseId, now }, { kind: 'final', state: 'succeeded', outputs: null, error: null });
  }
  await db.destroy();
  if (sqlite.open) sqlite.close();
  log(`filled ${COMMANDS} commands in ${Math.round((performance.now() - t0) / 1000)} s`);
}
const dbBytes = statSync(join(dataDir, 'tether.db')).size;

// 2. The server again, submissions from this process, then the backup while they go on.
s = await startServer({ dataDir, port: await freePort(), logFile: join(dir, 'server.log') });
const acked: { id: number; at: number }[] = [];
const latency: { at: number; ms: number }[] = [];
let stop = false;
let seq = 0;
const submitter = async () => {
  while (!stop) {
    const a = performance.now();
    const r = await s.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'bench1' }, type: 'manifest', spec: { manifests: 'kind: ConfigMap\n' }, idempotencyKey: `b-${++seq}` });
    const b = performance.now();
    acked.push({ id: r.body.id, at: b });
    latency.push({ at: a, ms: b - a });
  }
};
const load = Promise.all(Array.from({ length: SUBMITTERS }, submitter));
await sleep(5000);
const backupStart = performance.now();
const ackedBefore = acked.filter((x) => x.at < backupStart).map((x) => x.id);
const file = join(dir, 'backup.tar.gz');
const b = await tether(['backup', '--data-dir', dataDir, '--to', file]);
const backupEnd = performance.now();
if (b.code !== 0) throw new Error(`tether backup failed: ${b.out}`);
await sleep(2000);
stop = true;
await load;
await s.stop();
const before = latency.filter((l) => l.at < backupStart).map((l) => l.ms);
const during = latency.filter((l) => l.at >= backupStart && l.at < backupEnd).map((l) => l.ms);

// 3. Restore, and look for every command acknowledged before the backup began.
const target = join(dir, 'restored');
const r = await tether(['restore', '--from', file, '--data-dir', target]);
if (r.code !== 0) throw new Error(`tether restore failed: ${r.out}`);
const restored = new SQLite(join(target, 'tether.db'), { readonly: true });
const has = restored.prepare('SELECT 1 FROM commands WHERE id = ?');
const missing = ackedBefore.filter((id) => has.get(id) === undefined).length;
const total = (restored.prepare('SELECT count(*) AS n FROM commands').get() as { n: number }).n;
restored.close();

const out = {
  commands: COMMANDS,
  databaseMB: mb(dbBytes),
  backupFileMB: mb(statSync(file).size),
  backupSeconds: Math.round(b.ms / 100) / 10,
  backupMBps: Math.round(mb(dbBytes) / (b.ms / 1000)),
  restoreSeconds: Math.round(r.ms / 100) / 10,
  submitMs: { before: summarize(before), duringBackup: summarize(during) },
  submittedDuringBackup: during.length,
  ackedBeforeBackup: ackedBefore.length,
  missingAfterRestore: missing,
  restoredCommands: total,
};
rmSync(dir, { recursive: true, force: true });
process.stdout.write(`${JSON.stringify(out)}\n`);
