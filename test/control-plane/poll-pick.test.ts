/**
 * An idle agent's re-poll skips the claim's pick (the read of the oldest queued command of its
 * target) when this process's last pick for that target found nothing and nothing was queued for
 * it since (queue/dispatcher.ts knownEmpty, issue 18). Counted on the real SQLite connection:
 * every run of the pick statement. And every way a command becomes queued still reaches the next
 * poll: a submission, a lease expired by the reaper; the trust expires after EMPTY_PICK_TRUST_MS.
 */
import assert from 'node:assert/strict';
import type SQLite from 'better-sqlite3';
import { ManualClock } from '../../common/clock.ts';
import { sqliteOf } from '../../control-plane/db/database.ts';
import { PICK_SQL } from '../../control-plane/db/commands.repository.ts';
import { EMPTY_PICK_TRUST_MS } from '../../control-plane/queue/dispatcher.ts';
import { startTestControlPlane, removeDir, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';
import { sqliteOnly } from '../support/postgres.ts';

const manifest = (name: string) => ({ manifests: `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${name}}\n` });

describe('poll: the pick skipped for a target known to be empty', function () {
  this.timeout(30_000);
  let t: TestControlPlane;
  const clock = new ManualClock();
  let a: TestAgent;
  let b: TestAgent;
  let picks = 0;
  let restore: (() => void) | undefined;

  before(async function () {
    sqliteOnly(this, 'counts the statements of the SQLite claim; on PostgreSQL every poll runs its claim');
    t = await startTestControlPlane({ leaseSeconds: 30, longPollSeconds: 20 }, { clock, reaper: false });
    await t.createCluster('pick1');
    a = await t.agent('pick1', 'cluster-agent');
    b = await t.agent('pick1', 'cluster-agent');
    // Every run of the pick statement on the control plane's own connection (same process).
    const sqlite = sqliteOf(t.cp.db);
    const proto = Object.getPrototypeOf(sqlite.prepare('SELECT 1')) as { get: SQLite.Statement['get'] };
    const get = proto.get;
    proto.get = function (this: SQLite.Statement, ...args: unknown[]) {
      if (this.source === PICK_SQL) picks++;
      return get.apply(this, args as never);
    } as SQLite.Statement['get'];
    restore = () => (proto.get = get);
  });
  after(async () => {
    restore?.();
    for (const x of [a, b]) x?.client.close();
    await t?.close();
    if (t) removeDir(t.dataDir);
  });

  const submit = async (name: string) =>
    (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'pick1' }, type: 'manifest', spec: manifest(name) })).body.id;

  it('runs the pick once for idle re-polls; a submission makes the next poll pick and claim it', async () => {
    const before = picks;
    assert.equal((await a.client.poll(0)).command, null);
    assert.equal(picks - before, 1, 'the first poll picks');
    for (let i = 0; i < 3; i++) assert.equal((await a.client.poll(0)).command, null);
    assert.equal((await b.client.poll(0)).command, null);
    assert.equal(picks - before, 1, 'idle re-polls of the same target (either agent) skip the pick');
    const id = await submit('after-empty');
    const r = await b.client.poll(0);
    assert.equal(r.command?.id, id, 'the next poll after a submission claims it');
    assert.equal(picks - before, 2);
    await b.client.report(id, { leaseId: r.command!.leaseId, outcome: 'succeeded' });
    assert.equal((await a.client.poll(0)).command, null);
    assert.equal((await a.client.poll(0)).command, null);
    assert.equal(picks - before, 3, 'after a claim the next poll picks again, then trusts its empty pick');
  });

  it('a command requeued by the reaper (its lease expired) is claimed by the next poll', async () => {
    const id = await submit('requeued');
    const first = await a.client.poll(0);
    assert.equal(first.command?.id, id);
    assert.equal((await b.client.poll(0)).command, null, 'nothing else queued: b marks the target empty');
    // a goes silent: its lease runs out, the reaper queues the command again.
    clock.advance(31_000);
    assert.equal(await t.cp.queue.reapExpired(), 1);
    const again = await b.client.poll(0);
    assert.equal(again.command?.id, id, 'the requeued command reaches the next poll');
    await b.client.report(id, { leaseId: again.command!.leaseId, outcome: 'succeeded' });
  });

  it('trusts an empty pick for EMPTY_PICK_TRUST_MS at most', async () => {
    assert.equal((await a.client.poll(0)).command, null);
    const before = picks;
    assert.equal((await a.client.poll(0)).command, null);
    assert.equal(picks, before, 'trusted');
    clock.advance(EMPTY_PICK_TRUST_MS);
    assert.equal((await a.client.poll(0)).command, null);
    assert.equal(picks - before, 1, 'picked again once the trust ran out');
  });
});
