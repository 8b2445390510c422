/**
 * Submit to claim with a poll held, on a real server (SQLite, group commit, mutual TLS, HTTP/2):
 * the submission and the claim it wakes share one WAL sync (queue.service.ts, submit). Before,
 * the submission's answer started its sync at once, the claim's write missed it, and the claim
 * waited for a second sync: two fsyncs in the path from submit to claim (issue 18, the claim tail).
 * Counted by the server's own /metrics counter, tether_durability_syncs_total.
 */
import assert from 'node:assert/strict';
import { eventually, startTestControlPlane, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';
import { sqliteOnly } from '../support/postgres.ts';

describe('submit to claim with a held poll shares one WAL sync (SQLite, group commit)', function () {
  this.timeout(60_000);
  let t: TestControlPlane | undefined;

  before(async function () {
    sqliteOnly(this, 'the group commit whose syncs it counts is SQLite\'s; on PostgreSQL a commit is durable when it returns');
    t = await startTestControlPlane({ durability: 'full' });
    await t.createCluster('tail');
  });
  after(async () => {
    await t?.close();
  });

  const metric = async (name: string): Promise<number> => {
    const m = await t!.cp.metrics.registry.getSingleMetric(name)?.get();
    assert.ok(m, `${name} is registered`);
    return m.values.reduce((a, v) => a + v.value, 0);
  };

  it('makes one sync per submitted command that a held poll claims (two before the fix)', async () => {
    const cp = t!;
    const agent: TestAgent = await cp.agent('tail', 'cluster-agent');
    await agent.client.heartbeat({});
    const rounds = 5;
    let syncs = 0;
    let waiters = 0;
    for (let i = 0; i < rounds; i++) {
      const poll = agent.client.poll(20);
      await eventually(async () => (await metric('tether_long_polls_held')) === 1, 10_000, 'the poll held');
      const before = await metric('tether_durability_syncs_total');
      const waitersBefore = await metric('tether_durability_sync_waiters_total');
      const submitted = await cp.admin.request<{ id: number }>('POST', '/v1/commands', {
        target: { cluster: 'tail' },
        type: 'manifest',
        spec: { manifests: `kind: ConfigMap\nmetadata: {name: tail-${i}}\n` },
      });
      const claimed = (await poll).command;
      assert.equal(claimed?.id, submitted.body.id, 'the held poll claims the submitted command');
      syncs += (await metric('tether_durability_syncs_total')) - before;
      waiters += (await metric('tether_durability_sync_waiters_total')) - waitersBefore;
      // The claim's lease ends with a result (its own sync), outside the counted window.
      await agent.client.report(claimed.id, { leaseId: claimed.leaseId, outcome: 'succeeded' });
    }
    assert.equal(syncs, rounds, `one WAL sync per submit-and-claim (${syncs} in ${rounds} rounds)`);
    assert.equal(waiters, 2 * rounds, 'the submission and the claim each waited for the sync they share');
  });
});
