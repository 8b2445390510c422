/**
 * The durability barrier (control-plane/db/durability.ts) on a real SQLite file: nothing to wait
 * for when nothing was committed, one fsync shared by concurrent commits, the heartbeat batch left
 * out (committed on its own timer, waited for by nobody, and never making another answer wait),
 * the coverage invariant with a batch commit between a write and its barrier, a Kysely transaction
 * left open by another request waited for rather than counted, and `normal` without any barrier. That the answers it guards are
 * on disk after a power cut is proved by test/faults/power-loss.test.ts.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openDatabase, migrate, type OpenedDatabase } from '../../control-plane/db/database.ts';
import { openDurability, walSyncHoldForTests, type Durability } from '../../control-plane/db/durability.ts';
import { insertAccount, insertCluster } from '../../control-plane/db/accounts.repository.ts';
import { flushHeartbeats, insertAgent, recordHeartbeat } from '../../control-plane/db/agents.repository.ts';
import { insertCommand } from '../../control-plane/db/commands.repository.ts';
import { eventually, removeDir, tempDir } from '../support/control-plane.ts';

describe('durability barrier (group commit)', () => {
  let dir: string;
  let o: OpenedDatabase;
  let file: string;
  let durability: Durability;
  const submit = (n: number) =>
    insertCommand(o.db, { aid: 'acct1', cid: 'c1', nid: null, type: 'manifest', spec: '{}', idempotencyKey: `k${n}`, timeoutSeconds: 60, maxAttempts: 1, now: Date.now() });

  beforeEach(async () => {
    dir = tempDir('tether-durability-');
    file = join(dir, 'tether.db');
    o = openDatabase(file);
    await migrate(o.db);
    const now = Date.now();
    await insertAccount(o.db, { aid: 'acct1', name: 'a', now });
    await insertCluster(o.db, { aid: 'acct1', cid: 'c1', domain: 'c1.acct1.local', now });
    await insertAgent(o.db, { id: 'ca-0000000001', aid: 'acct1', cid: 'c1', role: 'cluster-agent', nid: null, control_plane: 0, created_at: now });
    durability = openDurability({ ...o, file, mode: 'full' });
  });
  afterEach(async () => {
    walSyncHoldForTests.hold = undefined;
    durability.close();
    await o.db.destroy();
    if (o.sqlite.open) o.sqlite.close();
    removeDir(dir);
  });

  it('is group commit on a NORMAL database, and has nothing to wait for when nothing was committed since its last sync', async () => {
    assert.equal(durability.method, 'group-commit');
    await submit(1);
    const w = durability.barrier();
    assert.ok(w, 'a commit since the last sync must be waited for');
    await w;
    assert.equal(durability.barrier(), undefined, 'nothing new: no wait');
    assert.equal(durability.stats().syncs, 1);
  });

  it('shares one fsync between the commits that arrive while one runs, and never answers a commit with a sync that started before it', async () => {
    await submit(1);
    const first = durability.barrier()!; // starts a sync now
    await submit(2);
    const second = durability.barrier()!; // committed after that sync started: needs the next one
    await submit(3);
    const third = durability.barrier()!;
    assert.notEqual(first, second);
    assert.equal(second, third, 'commits made during one sync share the next');
    let firstDone = false;
    void first.then(() => (firstDone = true));
    await second;
    assert.ok(firstDone, 'syncs finish in order');
    assert.equal(durability.stats().syncs, 2);
    assert.equal(durability.stats().waiters, 3);
  });

  const beat = (now: number) => recordHeartbeat(o.db, 'ca-0000000001', { now, version: '1.0', metrics: null, vpn: null });
  const agentRow = () => o.sqlite.prepare('SELECT last_heartbeat_at, heartbeats FROM agents WHERE id = ?').get('ca-0000000001') as { last_heartbeat_at: number | null; heartbeats: number };

  it('leaves the heartbeat batch out: a pending beat is not waited for, the batch commits on its own timer, and its commit makes nothing wait', async () => {
    assert.equal(durability.barrier(), undefined, 'the set-up was synced when the barrier opened');
    await beat(12345);
    assert.equal(durability.barrier(), undefined, 'a pending heartbeat batch must not make an answer wait');
    // Committed by the batch's own timer: no barrier, no flush asked for.
    await eventually(() => agentRow().heartbeats === 1, 5000, 'the heartbeat batch committed by its timer');
    assert.deepEqual(agentRow(), { last_heartbeat_at: 12345, heartbeats: 1 });
    assert.equal(durability.barrier(), undefined, 'a committed heartbeat batch must not make an answer with nothing new wait');
    await beat(12346);
    flushHeartbeats(o.db);
    assert.equal(agentRow().heartbeats, 2);
    assert.equal(durability.barrier(), undefined);
    assert.equal(durability.stats().syncs, 0, 'no sync for heartbeats');
  });

  it('keeps the invariant with a batch commit between a write and its barrier: the answer waits for a sync that started after the write', async () => {
    // Each sync is held until the test releases it (the test seam), so which sync answers what is seen, not timed.
    const held: (() => void)[] = [];
    walSyncHoldForTests.hold = () => new Promise<void>((r) => held.push(r));
    await submit(1);
    const first = durability.barrier()!;
    assert.ok(first);
    assert.equal(held.length, 1, 'the first sync started, counting submission 1, and is held');
    // A write, then a heartbeat batch commit, then the write's barrier.
    await submit(2);
    await beat(20000);
    flushHeartbeats(o.db);
    assert.equal(agentRow().heartbeats, 1, 'the batch is committed between the write and its barrier');
    const second = durability.barrier();
    assert.ok(second, 'a write followed by a batch commit must still be waited for');
    assert.notEqual(second, first, 'the sync that started before the write must not answer it');
    let secondDone = false;
    void second.then(() => (secondDone = true));
    held[0]!();
    await first;
    await eventually(() => held.length === 2, 5000, 'the next sync to start');
    assert.equal(secondDone, false, 'answered before the sync that covers it finished');
    held[1]!();
    await second;
    assert.equal(durability.stats().syncs, 2);
    // The write is synced; another batch commit after it asks for nothing.
    await beat(20001);
    flushHeartbeats(o.db);
    assert.equal(durability.barrier(), undefined);
    // A batch commit while a sync runs: an answer with nothing new waits for that sync at most, never the next one.
    await submit(3);
    const third = durability.barrier()!;
    assert.equal(held.length, 3);
    await beat(20002);
    flushHeartbeats(o.db);
    assert.equal(durability.barrier(), third, 'nothing new since the running sync started: that sync, not another');
    held[2]!();
    await third;
    assert.equal(held.length, 3, 'no sync for the batch');
  });

  it('waits for a Kysely transaction left open by another request instead of counting its uncommitted changes', async () => {
    await submit(1);
    let release!: () => void;
    const open = new Promise<void>((r) => (release = r));
    let committed = false;
    const trx = o.db.transaction().execute(async (t) => {
      await t.updateTable('clusters').set({ domain: 'changed.local' }).where('cid', '=', 'c1').execute();
      await open;
      committed = true;
    });
    await new Promise((r) => setTimeout(r, 10));
    assert.ok(o.sqlite.inTransaction);
    const w = durability.barrier()!;
    let synced = false;
    void w.then(() => (synced = true));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(synced, false, 'the sync must not start inside the open transaction');
    release();
    await trx;
    await w;
    assert.ok(committed && synced);
    // The transaction's change was committed before the sync's count was taken: nothing left to wait for.
    assert.equal(durability.barrier(), undefined);
  });

  it('normal: no barrier at all', async () => {
    const normal = openDurability({ ...o, file, mode: 'normal' });
    await submit(1);
    assert.equal(normal.method, 'none');
    assert.equal(normal.barrier(), undefined);
  });
});
