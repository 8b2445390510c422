/**
 * The heartbeat batch's window (agents.repository.ts, issue 18): beats of many agents arriving
 * over a few hundred milliseconds go into one transaction, committed by the batch's own timer
 * (HEARTBEAT_BATCH_MS), not one per 50 ms; a read of the agents table still sees every beat at
 * once (it flushes the batch first). Seen from a second connection on the same file, which
 * flushes nothing.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openDatabase, migrate, type OpenedDatabase } from '../../control-plane/db/database.ts';
import { insertAccount, insertCluster } from '../../control-plane/db/accounts.repository.ts';
import { getAgent, insertAgent, recordHeartbeat } from '../../control-plane/db/agents.repository.ts';
import { eventually, removeDir, tempDir } from '../support/control-plane.ts';

describe('heartbeat batch window', function () {
  this.timeout(20_000);
  let dir: string;
  let o: OpenedDatabase;
  let other: Database.Database;
  const ids = Array.from({ length: 40 }, (_, i) => `ca-${String(i + 1).padStart(10, '0')}`);

  before(async () => {
    dir = tempDir('tether-hb-batch-');
    const file = join(dir, 'tether.db');
    o = openDatabase(file);
    await migrate(o.db);
    const now = Date.now();
    await insertAccount(o.db, { aid: 'acct1', name: 'a', now });
    await insertCluster(o.db, { aid: 'acct1', cid: 'c1', domain: 'c1.acct1.local', now });
    for (const id of ids) await insertAgent(o.db, { id, aid: 'acct1', cid: 'c1', role: 'cluster-agent', nid: null, control_plane: 0, created_at: now });
    other = new Database(file, { readonly: true });
  });
  after(async () => {
    other?.close();
    await o.db.destroy();
    if (o.sqlite.open) o.sqlite.close();
    removeDir(dir);
  });

  const committed = () => (other.prepare('SELECT COUNT(*) FROM agents WHERE heartbeats > 0').pluck().get() as number);

  it('commits the beats of 40 agents arriving over ~200 ms together, on its own timer, and a read sees them at once', async () => {
    const t0 = Date.now();
    for (const id of ids) {
      await recordHeartbeat(o.db, id, { now: Date.now(), version: '1.0', metrics: null, vpn: null });
      await new Promise((r) => setTimeout(r, 5));
    }
    const elapsed = Date.now() - t0;
    // 50 ms batches had committed most of them by now; one window of 1 s has committed none.
    assert.equal(committed(), 0, `no batch committed yet after ${elapsed} ms of beats`);
    await eventually(() => committed() === ids.length, 10_000, 'the batch committed by its timer, every beat in it');
    // A read of the agents table flushes what is pending: one beat is seen at once.
    await recordHeartbeat(o.db, ids[0]!, { now: Date.now(), version: '1.1', metrics: null, vpn: null });
    assert.equal((await getAgent(o.db, ids[0]!))?.version, '1.1');
    assert.equal((await getAgent(o.db, ids[0]!))?.heartbeats, 2);
  });
});
