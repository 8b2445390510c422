/**
 * Drift ticks on PostgreSQL issue no query on a connection already busy with one. pg runs a
 * client's queries one after another and warns ("Calling client.query() when the client is
 * already executing a query is deprecated", pg@9 refuses it); it was seen from the drift
 * scheduler: every check it submits, and every result the agent reports, NOTIFYs the other
 * replicas over the one notification connection, and those NOTIFYs were sent at once.
 *
 * The warning is emitted once per process, so a run where another test met it first would not
 * see it again: beside listening for it, pg.Client#query is wrapped to count calls made while the
 * client already has a query queued behind a running one (pg's own condition for the warning).
 * Real PostgreSQL, real TLS, a real git source, a scripted agent over the real agent API.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import pg from 'pg';
import { ManualClock } from '../../common/clock.ts';
import type { CommandView } from '../../common/wire.ts';
import type { DeployResponse } from '../../control-plane/bundles/bundles.wire.ts';
import { REPO_ROOT, removeDir, startTestControlPlane, tempDir, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';
import { readTree } from '../support/bundles.ts';
import { bareRepo } from '../cluster-agent/support.ts';
import { databaseFor, requirePostgres } from '../support/postgres.ts';

const CID = 'drpg';
const INSTANCES = 8;
const WARNING = /already executing a query/;

describe('bundles: drift ticks on PostgreSQL never query a busy connection', function () {
  this.timeout(120_000);
  const clock = new ManualClock(Date.now());
  let dir: string;
  let t: TestControlPlane;
  let agent: TestAgent;
  const warnings: string[] = [];
  const onWarning = (w: Error) => {
    if (WARNING.test(w.message)) warnings.push(w.message);
  };
  type Internals = { _queryQueue?: unknown[]; pipeline?: boolean };
  const originalQuery = pg.Client.prototype.query;
  let overlapping = 0;

  before(async function () {
    requirePostgres(this);
    process.on('warning', onWarning);
    pg.Client.prototype.query = function (this: pg.Client & Internals, ...args: unknown[]) {
      if ((this._queryQueue?.length ?? 0) > 0 && !this.pipeline) overlapping++;
      return (originalQuery as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof originalQuery;
    dir = tempDir('tether-drift-pg-');
    const dataDir = join(dir, 'cp');
    t = await startTestControlPlane({ dataDir, databaseUrl: await databaseFor(dataDir), allowFileRoots: [dir], driftChecksPerTick: 50 }, { clock, reaper: false, driftScheduler: false });
    await t.createCluster(CID);
    const repo = bareRepo(dir, 'stacks');
    repo.commit(readTree(join(REPO_ROOT, 'bundles/webapp'), 'webapp'));
    await t.admin.request('POST', '/v1/bundles', { name: 'webapp', url: repo.url, ref: 'main', path: 'webapp' });
    agent = await t.agent(CID, 'cluster-agent');
  });
  after(async () => {
    pg.Client.prototype.query = originalQuery;
    process.off('warning', onWarning);
    agent?.client.close();
    await t?.close();
    if (dir) removeDir(dir);
  });

  /** Claims every queued job, then reports them all at once (apply flows and diff flows succeed). */
  async function agentRunsAtOnce(): Promise<number> {
    const claimed: { id: number; leaseId: string; steps: { name: string }[] }[] = [];
    for (;;) {
      const { command } = await agent.client.poll(0);
      if (!command) break;
      claimed.push({ id: command.id, leaseId: command.leaseId, steps: (command.spec as { steps: { name: string }[] }).steps });
    }
    const summary = { inSync: 1, drifted: 0, missing: 0, error: 0 };
    await Promise.all(claimed.map((c) => agent.client.report(c.id, { leaseId: c.leaseId, outcome: 'succeeded', outputs: { steps: c.steps.map((s) => ({ name: s.name, state: 'succeeded', outputs: { summary } })) } })));
    await t.cp.drift.settled();
    return claimed.length;
  }

  it('submits and records a tick of checks with no query on a busy connection and no pg warning', async () => {
    const osids: string[] = [];
    for (let i = 0; i < INSTANCES; i++) osids.push((await t.admin.request<DeployResponse>('POST', '/v1/instances', { bundle: 'webapp', cluster: CID, inputs: {} })).body.osid);
    assert.equal(await agentRunsAtOnce(), INSTANCES, 'the deployments ran');
    // Place every instance, then move past the latest due time: one tick submits every check.
    await t.cp.drift.tick();
    const due = await t.cp.db.selectFrom('instances').select('next_check_at').execute();
    clock.set(Math.max(...due.map((r) => Number(r.next_check_at))) + 1);
    await t.cp.drift.tick();
    const diffs = (await t.admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?limit=200')).body.commands.filter((j) => j.state === 'queued');
    assert.equal(diffs.length, INSTANCES, 'one check per instance');
    assert.equal(await agentRunsAtOnce(), INSTANCES, 'the checks ran');
    for (const o of osids) assert.equal((await t.cp.db.selectFrom('instances').select('sync_status').where('osid', '=', o).executeTakeFirstOrThrow()).sync_status, 'synced');
    // A warning is emitted on the next tick after the call.
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(warnings, [], 'no pg warning');
    assert.equal(overlapping, 0, 'no query issued on a connection already busy with one');
  });
});
