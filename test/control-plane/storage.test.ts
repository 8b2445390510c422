/**
 * The control plane's storage hot paths (control-plane/db, prepared statements outside Kysely):
 * they never run inside a Kysely transaction still open on the connection, heartbeats are batched
 * yet visible to the next read, and pending cancellations are found again after a restart and
 * after a retryable failure requeued the command.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, migrate, type OpenedDatabase } from '../../control-plane/db/database.ts';
import { insertAccount, insertCluster } from '../../control-plane/db/accounts.repository.ts';
import { getAgent, insertAgent, recordHeartbeat } from '../../control-plane/db/agents.repository.ts';
import { PICK_SQL, cancelRequestedFor, completeAttempt, getCommandById, insertCommand, requestCancel } from '../../control-plane/db/commands.repository.ts';
import { claimNext } from '../../control-plane/db/claim.ts';
import { appendLogs, readLogs } from '../../control-plane/db/logs.repository.ts';

describe('storage hot paths (control-plane/db)', () => {
  let dir: string;
  let o: OpenedDatabase;
  const open = async () => {
    o = openDatabase(join(dir, 'tether.db'));
    await migrate(o.db);
  };
  const close = async () => {
    await o.db.destroy();
    if (o.sqlite.open) o.sqlite.close();
  };
  const submit = (cid = 'c1') =>
    insertCommand(o.db, { aid: 'a1', cid, nid: null, type: 'manifest', spec: '{"manifests":"kind: Namespace"}', idempotencyKey: null, timeoutSeconds: 600, maxAttempts: 3, now: 1000 });
  const claim = (agentId: string, leaseId: string) => claimNext(o.db, { aid: 'a1', cid: 'c1', nid: null }, { agentId, leaseId, leaseExpiresAt: 60_000, now: 2000 });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tether-storage-'));
    await open();
    await insertAccount(o.db, { aid: 'a1', name: 'a', now: 1 });
    await insertCluster(o.db, { aid: 'a1', cid: 'c1', domain: 'c1.a1.test', now: 1 });
    for (const id of ['ca-aaaaaaaaaa', 'ca-bbbbbbbbbb']) await insertAgent(o.db, { id, aid: 'a1', cid: 'c1', role: 'cluster-agent', nid: null, control_plane: 0, created_at: 1 });
  });
  afterEach(async () => {
    await close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('never runs a statement inside an open Kysely transaction: a rolled-back transaction does not take a submission with it', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const trx = o.db.transaction().execute(async (t) => {
      await insertCluster(t, { aid: 'a1', cid: 'c2', domain: 'c2.a1.test', now: 1 });
      await gate;
      throw new Error('rolled back');
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(o.sqlite.inTransaction, true);
    const submitted = submit(); // waits for the transaction's end
    release();
    await assert.rejects(trx, /rolled back/);
    const { row } = await submitted;
    assert.equal((await getCommandById(o.db, row.id))?.state, 'queued', 'the submission outlived the rolled-back transaction');
  });

  it('writes heartbeats in batches, visible to the next read of the agent and across a close', async () => {
    await recordHeartbeat(o.db, 'ca-aaaaaaaaaa', { now: 5000, version: '1.0.0', metrics: {}, vpn: null });
    await recordHeartbeat(o.db, 'ca-aaaaaaaaaa', { now: 6000, version: '1.0.1', metrics: { cpu: 1, mem: 5 }, vpn: '{"wg0":{}}' });
    const a = await getAgent(o.db, 'ca-aaaaaaaaaa');
    assert.equal(a?.last_heartbeat_at, 6000);
    assert.equal(a?.version, '1.0.1');
    assert.equal(a?.heartbeats, 2);
    // A beat carries only what changed: the rest is kept, metrics are merged, in and across batches.
    await recordHeartbeat(o.db, 'ca-aaaaaaaaaa', { now: 6500, version: null, metrics: { cpu: 2 }, vpn: null });
    await recordHeartbeat(o.db, 'ca-aaaaaaaaaa', { now: 6600, version: null, metrics: { load: [1] }, vpn: null });
    const b = await getAgent(o.db, 'ca-aaaaaaaaaa');
    assert.equal(b?.version, '1.0.1');
    assert.equal(b?.vpn, '{"wg0":{}}');
    assert.deepEqual(JSON.parse(b?.metrics ?? 'null'), { cpu: 2, mem: 5, load: [1] });
    assert.equal(b?.heartbeats, 4);
    await recordHeartbeat(o.db, 'ca-aaaaaaaaaa', { now: 6700, version: null, metrics: null, vpn: null });
    assert.deepEqual(JSON.parse((await getAgent(o.db, 'ca-aaaaaaaaaa'))?.metrics ?? 'null'), { cpu: 2, mem: 5, load: [1] });
    await recordHeartbeat(o.db, 'ca-bbbbbbbbbb', { now: 7000, version: '2.0.0', metrics: {}, vpn: null });
    await close();
    await open();
    assert.equal((await getAgent(o.db, 'ca-bbbbbbbbbb'))?.last_heartbeat_at, 7000, 'the pending batch is written when the database closes');
  });

  it('tells the agent of a requested cancellation after a restart, and tells the next agent after a retryable failure requeued it', async () => {
    const { row } = await submit();
    const claimed = await claim('ca-aaaaaaaaaa', 'lease-1');
    assert.equal(claimed?.id, row.id);
    assert.deepEqual(await cancelRequestedFor(o.db, 'ca-aaaaaaaaaa'), []);
    await requestCancel(o.db, 'a1', row.id, 3000);
    assert.deepEqual(await cancelRequestedFor(o.db, 'ca-aaaaaaaaaa'), [row.id]);
    await close();
    await open();
    assert.deepEqual(await cancelRequestedFor(o.db, 'ca-aaaaaaaaaa'), [row.id], 'found again after a restart');
    const requeued = await completeAttempt(o.db, { id: row.id, agentId: 'ca-aaaaaaaaaa', leaseId: 'lease-1', now: 4000 }, { kind: 'retry', error: '{"code":"x"}' });
    assert.equal(requeued?.state, 'queued');
    assert.deepEqual(await cancelRequestedFor(o.db, 'ca-aaaaaaaaaa'), []);
    assert.equal((await claim('ca-bbbbbbbbbb', 'lease-2'))?.id, row.id);
    assert.deepEqual(await cancelRequestedFor(o.db, 'ca-bbbbbbbbbb'), [row.id], 'the new agent learns of the cancellation');
  });

  it('claims the oldest queued command once; an empty queue claims nothing and draws no lease id', async () => {
    const first = (await submit()).row;
    const second = (await submit()).row;
    let drawn = 0;
    const lease = (n: string) => () => (drawn++, n);
    const c1 = await claimNext(o.db, { aid: 'a1', cid: 'c1', nid: null }, { agentId: 'ca-aaaaaaaaaa', leaseId: lease('l1'), leaseExpiresAt: 60_000, now: 2000 });
    const c2 = await claimNext(o.db, { aid: 'a1', cid: 'c1', nid: null }, { agentId: 'ca-bbbbbbbbbb', leaseId: lease('l2'), leaseExpiresAt: 60_000, now: 2000 });
    const c3 = await claimNext(o.db, { aid: 'a1', cid: 'c1', nid: null }, { agentId: 'ca-bbbbbbbbbb', leaseId: lease('l3'), leaseExpiresAt: 60_000, now: 2000 });
    assert.deepEqual([c1?.id, c1?.lease_id, c1?.attempts, c2?.id, c2?.lease_id, c3], [first.id, 'l1', 1, second.id, 'l2', undefined]);
    assert.equal(drawn, 2);
  });

  it('the end-of-job lookups probe an index (instances_sync_job, instances_last_job), never every instance of the account', () => {
    const plan = (q: string) => (o.sqlite.prepare(`EXPLAIN QUERY PLAN ${q}`).all('a1', 7) as { detail: string }[]).map((r) => r.detail).join('; ');
    assert.match(plan(`SELECT osid FROM instances WHERE aid = ? AND sync_job_id = ?`), /USING INDEX instances_sync_job/);
    assert.match(plan(`SELECT osid FROM instances WHERE aid = ? AND last_job_id = ? AND last_action = 'apply'`), /USING INDEX instances_last_job/);
  });

  it('a claim and a result rewrite no index by agent (0017): the cancellation lookup has its own index of running commands with a cancellation requested, the lease extension goes by id', async () => {
    const plan = (q: string) => (o.sqlite.prepare(`EXPLAIN QUERY PLAN ${q}`).all() as { detail: string }[]).map((r) => r.detail).join('; ');
    const indexes = (o.sqlite.prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'commands' AND sql LIKE '%claimed_by%'`).pluck().all() as string[]).sort();
    assert.deepEqual(indexes, ['commands_cancel_requested'], 'the only index on claimed_by holds cancellations only');
    assert.match(plan(`SELECT id FROM commands WHERE claimed_by = 'x' AND state = 'running' AND cancel_requested_at IS NOT NULL`), /USING INDEX commands_cancel_requested \(claimed_by=\?\)/);
    assert.match(plan(`SELECT DISTINCT claimed_by FROM commands WHERE state = 'running' AND cancel_requested_at IS NOT NULL`), /USING INDEX commands_cancel_requested/);
    assert.match(plan(`UPDATE commands SET lease_expires_at = 1 WHERE claimed_by = 'x' AND state = 'running' AND id IN (SELECT value FROM json_each('[1]'))`), /USING INTEGER PRIMARY KEY/);
    // The index is empty while no cancellation is pending: a claim and a result leave it so.
    const { row } = await submit();
    await claim('ca-aaaaaaaaaa', 'L1');
    const entries = () => o.sqlite.prepare(`SELECT count(*) FROM commands INDEXED BY commands_cancel_requested WHERE state = 'running' AND cancel_requested_at IS NOT NULL`).pluck().get();
    assert.equal(entries(), 0);
    await requestCancel(o.db, 'a1', row.id, 3000);
    assert.equal(entries(), 1);
    assert.deepEqual(await cancelRequestedFor(o.db, 'ca-aaaaaaaaaa'), [row.id]);
  });

  it("the claim's pick, its parameters written +? (no re-prepare per call), still probes commands_queued on all three columns, for a cluster's and a node's target", () => {
    for (const nid of [null, 'n1']) {
      const plan = (o.sqlite.prepare(`EXPLAIN QUERY PLAN ${PICK_SQL}`).all('a1', 'c1', nid) as { detail: string }[]).map((r) => r.detail).join('; ');
      assert.equal(plan, 'SEARCH commands USING COVERING INDEX commands_queued (aid=? AND cid=? AND nid=?)');
    }
  });

  it('stores a log batch in order with one INSERT per 64 lines; the cap and its marker as before', async () => {
    const { row } = await submit();
    const stmt = Object.getPrototypeOf(o.sqlite.prepare('SELECT 1')) as Record<string, (...a: unknown[]) => unknown>;
    const originals = (['run', 'get', 'all', 'iterate'] as const).map((m) => [m, stmt[m]!] as const);
    let inserts = 0;
    for (const [m, f] of originals) stmt[m] = function (this: { source: string }, ...args: unknown[]) {
      if (this.source.startsWith('INSERT INTO command_logs')) inserts++;
      return f.apply(this, args);
    };
    const line = (i: number) => ({ ts: 5000 + i, stream: i % 3 === 0 ? 'stderr' : 'stdout', text: `line ${i} ${'x'.repeat(i % 7)}` });
    try {
      const stored = await appendLogs(o.db, row.id, Array.from({ length: 150 }, (_, i) => line(i)), 100_000);
      assert.equal(inserts, 3, '150 lines: 64 + 64 + 22');
      assert.deepEqual(stored.map(({ ts, stream, text }) => ({ ts, stream, text })), Array.from({ length: 150 }, (_, i) => line(i)));
      assert.ok(stored.every((l, i) => i === 0 || l.id > stored[i - 1]!.id), 'ids ascend in the lines\' order');
      assert.deepEqual(await readLogs(o.db, row.id, 0, 1000), stored);
    } finally {
      for (const [m, f] of originals) stmt[m] = f;
    }
    // Past the cap: the lines that fit, then one marker line, rewritten by the next append.
    const capped = await appendLogs(o.db, row.id, [{ ts: 1, stream: 'stdout', text: 'y'.repeat(40) }, { ts: 2, stream: 'stdout', text: 'z'.repeat(5000) }], 2000);
    assert.deepEqual(capped.map((l) => [l.stream, l.text.slice(0, 8)]), [['stdout', 'yyyyyyyy'], ['system', '[tether]']]);
    await appendLogs(o.db, row.id, [{ ts: 3, stream: 'stdout', text: 'w' }], 2000);
    const all = await readLogs(o.db, row.id, 0, 1000);
    assert.equal(all.length, 152);
    assert.match(all.at(-1)!.text, /5001 bytes in 2 lines dropped/);
  });
});
