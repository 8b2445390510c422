/**
 * `node bench/wal-frames.ts DB [--commands 3000]`: SQLite WAL frames written per commit of a
 * command's three writes (submit, claim, result), through the control plane's own repository
 * functions, on a COPY of a control plane's database (DB is copied to a temporary folder first and
 * migrated as `tether server` would; the original is never opened). Issue 18, "The command path,
 * second pass" in docs/performance.md: each frame is one page the commit appends to the WAL (two
 * `pwrite64`), so the count says which indexes a write touches, independent of the machine's load.
 *
 * Automatic checkpoints are off while it runs so the WAL only grows (a checkpoint every 500
 * commands, between commands, starts it over); a frame is 24 bytes of header and one page.
 */
import { copyFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { migrate, openDatabase } from '../control-plane/db/database.ts';
import { completeAttempt, insertCommand } from '../control-plane/db/commands.repository.ts';
import { claimNext } from '../control-plane/db/claim.ts';
import { loadAverage } from './lib/util.ts';

const { values: flags, positionals } = parseArgs({ allowPositionals: true, options: { commands: { type: 'string', default: '3000' } } });
if (positionals.length !== 1) {
  process.stderr.write('usage: node bench/wal-frames.ts DB [--commands 3000]\n');
  process.exit(2);
}
const N = Number(flags.commands);
const dir = mkdtempSync(join(tmpdir(), 'tether-wal-frames-'));
const file = join(dir, 'tether.db');
copyFileSync(positionals[0]!, file);
const load: { start: number[]; end?: number[] } = { start: loadAverage() };
try {
  const { db, sqlite } = openDatabase(file);
  await migrate(db);
  sqlite.pragma('wal_autocheckpoint = 0');
  sqlite.pragma('wal_checkpoint(TRUNCATE)');
  const target = sqlite.prepare(`SELECT a.id AS agentId, a.aid, a.cid FROM agents a WHERE a.role = 'cluster-agent' AND a.revoked_at IS NULL LIMIT 1`).get() as { agentId: string; aid: string; cid: string } | undefined;
  if (!target) throw new Error('the database has no cluster agent to claim with');
  const pageSize = Number(sqlite.pragma('page_size', { simple: true }));
  const wal = () => statSync(`${file}-wal`).size;
  const frames = [0, 0, 0];
  const spec = JSON.stringify({ manifests: 'apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n' });
  for (let i = 0; i < N; i++) {
    const now = Date.now();
    const s0 = wal();
    const { row } = await insertCommand(db, { aid: target.aid, cid: target.cid, nid: null, type: 'manifest', spec, idempotencyKey: null, timeoutSeconds: 600, maxAttempts: 3, now });
    const s1 = wal();
    const claimed = await claimNext(db, { aid: target.aid, cid: target.cid, nid: null }, { agentId: target.agentId, leaseId: `wal-frames-${i}`, leaseExpiresAt: now + 60_000, now });
    if (claimed?.id !== row.id) throw new Error(`claimed ${claimed?.id} instead of ${row.id}: the target has older queued commands`);
    const s2 = wal();
    await completeAttempt(db, { id: row.id, agentId: target.agentId, leaseId: `wal-frames-${i}`, now }, { kind: 'final', state: 'succeeded', outputs: null, error: null });
    const s3 = wal();
    frames[0]! += s1 - s0;
    frames[1]! += s2 - s1;
    frames[2]! += s3 - s2;
    if (i % 500 === 499) sqlite.pragma('wal_checkpoint(TRUNCATE)');
  }
  const per = frames.map((b) => Math.round((b / N / (pageSize + 24)) * 100) / 100);
  load.end = loadAverage();
  process.stdout.write(
    `${JSON.stringify({ commands: N, pageSize, walFramesPerCommit: { submit: per[0], claim: per[1], result: per[2] }, walFramesPerCommand: Math.round((per[0]! + per[1]! + per[2]!) * 100) / 100, load })}\n`,
  );
  await db.destroy();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
