/**
 * Heartbeats outside the durability barrier, on a real server (SQLite, group commit, mutual TLS,
 * HTTP/2): while the WAL's fsync is held by the test seam (`walSyncHoldForTests`), a heartbeat
 * that only says "alive" is answered, and its beat is committed by the batch's own timer, while a
 * result, a submission, a claim and a heartbeat that extends a lease stay unanswered until the
 * sync is released. That acknowledged writes survive a power cut is proved by
 * test/faults/power-loss.test.ts; the barrier's count by test/control-plane/durability.test.ts.
 */
import assert from 'node:assert/strict';
import { walSyncHoldForTests } from '../../control-plane/db/durability.ts';
import { sqliteOf } from '../../control-plane/db/database.ts';
import { eventually, startTestControlPlane, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';
import { sqliteOnly } from '../support/postgres.ts';

describe('heartbeats outside the durability barrier (server on SQLite, group commit)', function () {
  this.timeout(60_000);
  let t: TestControlPlane | undefined;
  const held: (() => void)[] = [];
  const releaseAll = () => {
    walSyncHoldForTests.hold = undefined;
    for (const r of held.splice(0)) r();
  };

  before(async function () {
    // On PostgreSQL a commit is durable when it returns: there is no group commit to hold.
    sqliteOnly(this, 'the group commit it holds is SQLite\'s; on PostgreSQL a commit is durable when it returns');
    t = await startTestControlPlane();
    await t.createCluster('hbeat');
  });
  after(async () => {
    releaseAll();
    await t?.close();
  });

  it('answers a heartbeat while the WAL sync is held; a result, a submission, a claim and a heartbeat extending a lease wait until it is released', async () => {
    const cp = t!;
    const sqlite = sqliteOf(cp.cp.db);
    const row = sqlite.prepare('SELECT state FROM commands WHERE idempotency_key = ?').pluck();
    const beats = sqlite.prepare('SELECT heartbeats FROM agents WHERE id = ?').pluck();
    const submit = (key: string) =>
      cp.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'hbeat' }, type: 'manifest', spec: { manifests: `kind: ConfigMap\nmetadata: {name: ${key}}\n` }, idempotencyKey: key });
    const a1: TestAgent = await cp.agent('hbeat', 'cluster-agent');
    const a2: TestAgent = await cp.agent('hbeat', 'cluster-agent');
    // Before the hold: a command claimed by a1, whose result is reported while the sync is held.
    await submit('first');
    const first = (await a1.client.poll(0)).command;
    assert.ok(first, 'a1 claims the first command');
    await a1.client.heartbeat({ running: [first.id] });
    await a2.client.heartbeat({});

    // From now on every WAL sync waits until the test releases it.
    walSyncHoldForTests.hold = () => new Promise<void>((r) => held.push(r));
    const state: Record<string, string> = {};
    const track = <T>(name: string, p: Promise<T>): Promise<T> => {
      state[name] = 'pending';
      p.then(
        () => (state[name] = 'answered'),
        (err: unknown) => (state[name] = `failed: ${String(err)}`),
      );
      return p;
    };
    const result = track('result', a1.client.report(first.id, { leaseId: first.leaseId, outcome: 'succeeded' }));
    await eventually(() => held.length >= 1, 10_000, 'the result to start a sync, held');
    const submission = track('submission', submit('second'));
    await eventually(() => row.get('second') === 'queued', 10_000, 'the second command committed');
    const claim = track('claim', a2.client.poll(5));
    await eventually(() => row.get('second') === 'running', 10_000, 'a2 to claim the second command');
    const secondId = Number(sqlite.prepare("SELECT id FROM commands WHERE idempotency_key = 'second'").pluck().get());
    const extending = track('heartbeat extending a lease', a2.client.heartbeat({ running: [secondId] }));

    // The heartbeat that only says "alive" is answered while the sync is held...
    const before = Number(beats.get(a1.identity.agentId));
    const alive = await a1.client.heartbeat({ metrics: { load: [0.5] } });
    assert.deepEqual(alive, { cancel: [] });
    // ...and its beat is committed by the batch's own timer, the sync still held.
    await eventually(() => Number(beats.get(a1.identity.agentId)) === before + 1, 10_000, 'the heartbeat batch committed while the sync is held');
    assert.ok(held.length >= 1 && walSyncHoldForTests.hold, 'the sync is still held');
    assert.deepEqual(state, {
      result: 'pending',
      submission: 'pending',
      claim: 'pending',
      'heartbeat extending a lease': 'pending',
    });

    releaseAll();
    assert.equal((await result).status, 'applied');
    assert.equal((await submission).status, 202);
    assert.equal((await claim).command?.id, secondId);
    assert.deepEqual(await extending, { cancel: [] });
    assert.deepEqual(state, { result: 'answered', submission: 'answered', claim: 'answered', 'heartbeat extending a lease': 'answered' });
    a1.client.close();
    a2.client.close();
  });
});
