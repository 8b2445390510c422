/**
 * Scheduled drift checks and autoSync on a real control plane (real TLS, real SQLite, a real git
 * source), with an injected clock (no sleeping; the scheduler's timer is off and each tick is
 * called by the test). The agent is a scripted one over the real agent API (mTLS, poll, result):
 * it answers apply flows with success and diff flows with the result each test chooses, which
 * the real cluster agent computes in drift.e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { ManualClock } from '../../common/clock.ts';
import type { CommandView } from '../../common/wire.ts';
import type { DeployResponse, InstanceView } from '../../control-plane/bundles/bundles.wire.ts';
import { DriftScheduler } from '../../control-plane/bundles/drift.scheduler.ts';
import type { BundlesService } from '../../control-plane/bundles/bundles.service.ts';
import type { Db } from '../../control-plane/db/database.ts';
import { REPO_ROOT, captureLogger, eventually, removeDir, startTestControlPlane, tempDir, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';
import { readTree } from '../support/bundles.ts';
import { runCli } from '../support/cli.ts';
import { bareRepo } from '../cluster-agent/support.ts';

const CID = 'dr1';
const MIN = 60_000;
type Summary = { inSync?: number; drifted?: number; missing?: number; error?: number };

describe('bundles: scheduled drift checks and autoSync (real control plane, injected clock)', function () {
  this.timeout(120_000);
  const clock = new ManualClock(Date.now());
  const logs = captureLogger();
  let dir: string;
  let t: TestControlPlane;
  let agent: TestAgent;
  let cli: NodeJS.ProcessEnv;

  const tick = async () => {
    await t.cp.drift.tick();
    await t.cp.drift.settled();
  };
  const instance = async (osid: string) => (await t.admin.request<InstanceView>('GET', `/v1/instances/${osid}`)).body;
  /** The row as stored (what was recorded without anyone reading the instance through the API). */
  const row = async (osid: string) => t.cp.db.selectFrom('instances').selectAll().where('osid', '=', osid).executeTakeFirstOrThrow();
  const jobs = async () => (await t.admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?limit=200')).body.commands;
  const isDiff = (j: { spec: unknown }) => JSON.stringify(j.spec).includes('"type":"diff"');
  const diffJobs = async () => (await jobs()).filter(isDiff);
  const metric = async (name: string) => (await t.cp.metrics.registry.getSingleMetricAsString(name)).split('\n').filter((l) => !l.startsWith('#') && l.trim() !== '');

  /**
   * The scripted agent takes the jobs queued now (not those their results make the control plane
   * submit): apply flows succeed, diff flows end as `diff` says.
   */
  async function agentRuns(diff: Summary | 'fail' = { inSync: 1 }): Promise<{ applies: number; diffs: number }> {
    const n = { applies: 0, diffs: 0 };
    const queued = (await jobs()).filter((j) => j.state === 'queued').length;
    for (let i = 0; i < queued; i++) {
      const { command } = await agent.client.poll(0);
      if (!command) break;
      const steps = (command.spec as { steps: { name: string; type: string }[] }).steps;
      if (steps[0]?.type === 'diff') {
        n.diffs++;
        if (diff === 'fail') await agent.client.report(command.id, { leaseId: command.leaseId, outcome: 'failed', error: { code: 'diff_failed', message: 'no API server', retryable: false } });
        else {
          const summary = { inSync: 0, drifted: 0, missing: 0, error: 0, ...diff };
          await agent.client.report(command.id, { leaseId: command.leaseId, outcome: 'succeeded', outputs: { steps: steps.map((s) => ({ name: s.name, state: 'succeeded', outputs: { summary } })) } });
        }
      } else {
        n.applies++;
        await agent.client.report(command.id, { leaseId: command.leaseId, outcome: 'succeeded', outputs: { steps: [] } });
      }
    }
    await t.cp.drift.settled();
    return n;
  }
  async function deploy(): Promise<string> {
    const r = await t.admin.request<DeployResponse>('POST', '/v1/instances', { bundle: 'webapp', cluster: CID, inputs: {} });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.osid;
  }
  /** Places every new instance, then moves the clock to just past the latest due time. */
  async function makeDue(osids: string[]): Promise<void> {
    await tick();
    const due = await Promise.all(osids.map(async (o) => (await row(o)).next_check_at));
    for (const d of due) assert.ok(d !== null, 'placed');
    clock.set(Math.max(clock.now(), ...(due as number[])) + 1);
  }

  before(async () => {
    dir = tempDir('tether-drift-sched-');
    t = await startTestControlPlane({ dataDir: join(dir, 'cp'), allowFileRoots: [dir], driftChecksPerTick: 2 }, { clock, log: logs.log, reaper: false, driftScheduler: false });
    await t.createCluster(CID);
    const repo = bareRepo(dir, 'stacks');
    repo.commit(readTree(join(REPO_ROOT, 'bundles/webapp'), 'webapp'));
    await t.admin.request('POST', '/v1/bundles', { name: 'webapp', url: repo.url, ref: 'main', path: 'webapp' });
    agent = await t.agent(CID, 'cluster-agent');
    writeFileSync(join(dir, 'ca.pem'), t.caPem);
    cli = { TETHER_URL: t.url, TETHER_API_KEY: t.adminToken, TETHER_CA_FILE: join(dir, 'ca.pem'), HOME: dir };
  });

  after(async () => {
    agent?.client.close();
    await t?.close();
    if (dir) removeDir(dir);
  });

  it('places a new instance within one interval, checks it when due (one diff at a time), records the result the moment it ends', async () => {
    const osid = await deploy();
    await tick();
    assert.equal((await diffJobs()).length, 0, 'no check while the deploy runs');
    await agentRuns();
    const start = clock.now();
    await tick();
    const placed = (await row(osid)).next_check_at!;
    assert.ok(placed >= start && placed <= start + 10 * MIN, `first check within one interval (${placed - start} ms)`);
    assert.equal((await instance(osid)).nextCheckAt, new Date(placed).toISOString(), 'shown in the view');
    assert.equal((await diffJobs()).length, 0, 'not due yet');

    clock.set(placed + 1);
    await tick();
    assert.equal((await diffJobs()).length, 1, 'due: one check submitted');
    const next = (await row(osid)).next_check_at!;
    assert.ok(next >= clock.now() + 8 * MIN && next <= clock.now() + 12 * MIN, `the next one interval ±20 % later (${next - clock.now()} ms)`);
    // Due again while its diff is still queued: no second diff.
    clock.set(next + 1);
    await tick();
    assert.equal((await diffJobs()).length, 1, 'at most one outstanding diff per instance');

    await agentRuns({ drifted: 1 });
    const r = await row(osid);
    assert.equal(r.sync_status, 'drifted', 'recorded when the job ended, before anyone read the instance');
    assert.equal(r.checked_job_id, r.sync_job_id);
    assert.deepEqual(await metric('tether_drift_checks_total'), ['tether_drift_checks_total{result="synced"} 0', 'tether_drift_checks_total{result="drifted"} 1', 'tether_drift_checks_total{result="error"} 0']);
    // Reading it (the lazy path) and a sweep do not record or count it again.
    assert.equal((await instance(osid)).syncStatus, 'drifted');
    await tick();
    assert.match((await metric('tether_drift_checks_total')).join('\n'), /result="drifted"\} 1$/m);
    assert.equal((await metric('tether_auto_syncs_total'))[0], 'tether_auto_syncs_total 0', 'autoSync is off by default');
  });

  it('autoSync: a drifted check submits one sync (logged with both job ids); the next check synced; an errored check never syncs', async () => {
    const osid = await deploy();
    await agentRuns();
    const set = await t.admin.request<InstanceView>('PATCH', `/v1/instances/${osid}`, { autoSync: true });
    assert.equal(set.status, 200);
    assert.equal(set.body.autoSync, true);
    await makeDue([osid]);
    await tick();
    const before = (await instance(osid)).version;
    const ran = await agentRuns({ missing: 1 });
    assert.equal(ran.applies, 0);
    assert.ok(ran.diffs >= 1);
    const v = await instance(osid);
    assert.equal(v.syncStatus, 'drifted');
    assert.equal(v.version, before + 1, 'the control plane submitted the sync itself');
    assert.equal(v.state, 'deploying');
    const check = (await row(osid)).sync_job_id!;
    assert.match(logs.text(), new RegExp(`"checkJobId":${check},"syncJobId":${v.job.id}.*autoSync: drift found, sync submitted`));
    assert.equal((await metric('tether_auto_syncs_total'))[0], 'tether_auto_syncs_total 1');
    // Never twice for the same check: a read and a sweep change nothing.
    await instance(osid);
    await tick();
    assert.equal((await instance(osid)).version, before + 1);

    // Due while the sync runs: skipped (busy), tried again soon.
    clock.set((await row(osid)).next_check_at! + 1);
    await tick();
    assert.equal((await diffJobs()).filter((j) => j.state === 'queued' && JSON.stringify(j.spec).includes(osid)).length, 0, 'no check while the sync runs');
    assert.equal((await agentRuns()).applies, 1, 'the sync runs');
    clock.set((await row(osid)).next_check_at! + 1);
    await tick();
    await agentRuns({ inSync: 3 });
    assert.equal((await instance(osid)).syncStatus, 'synced');
    assert.equal((await row(osid)).auto_sync_job_id, null, 'a synced check forgets the autoSync');

    // An errored check (the diff failed) is recorded as error and never syncs.
    clock.set((await row(osid)).next_check_at! + 1);
    await tick();
    await agentRuns('fail');
    const e = await instance(osid);
    assert.equal(e.syncStatus, 'error');
    assert.equal(e.version, before + 1, 'no sync after an errored check');
    assert.equal((await metric('tether_auto_syncs_total'))[0], 'tether_auto_syncs_total 1');
  });

  it('autoSync backs off when its syncs do not repair the drift', async () => {
    const osid = await deploy();
    await agentRuns();
    await t.admin.request('PATCH', `/v1/instances/${osid}`, { autoSync: true, driftCheck: { intervalSeconds: 60 } });
    await makeDue([osid]);
    await tick();
    await agentRuns({ drifted: 1 }); // autoSync #1
    const v1 = (await instance(osid)).version;
    await agentRuns(); // the sync "succeeds", the drift comes back
    clock.set((await row(osid)).next_check_at! + 1);
    await tick();
    await agentRuns({ drifted: 1 });
    assert.equal((await instance(osid)).version, v1, 'the second sync waits (backoff)');
    assert.match(logs.text(), /autoSync backing off/);
    clock.advance(5 * MIN);
    clock.set(Math.max(clock.now(), (await row(osid)).next_check_at! + 1));
    await tick();
    await agentRuns({ drifted: 1 });
    assert.equal((await instance(osid)).version, v1 + 1, 'after the backoff, autoSync tries again');
    assert.equal((await row(osid)).auto_sync_failures, 1);
    await agentRuns();
  });

  it('at most driftChecksPerTick checks a tick; off and deleted instances are never checked', async () => {
    const osids = [await deploy(), await deploy(), await deploy()];
    await agentRuns();
    await makeDue(osids);
    const before = (await diffJobs()).length;
    await t.admin.request('PATCH', `/v1/instances/${osids[2]}`, { driftCheck: 'off' });
    assert.equal((await instance(osids[2]!)).nextCheckAt, null);
    assert.equal((await instance(osids[2]!)).driftCheck, 'off');
    // Everything else from the earlier tests is due too: the cap holds.
    await tick();
    assert.equal((await diffJobs()).length - before, 2, 'the per-tick cap (2 here)');
    await agentRuns();
    for (let i = 0; i < 10; i++) {
      clock.advance(15 * MIN);
      await tick();
      await agentRuns();
    }
    assert.ok(!(await diffJobs()).some((j) => JSON.stringify(j.spec).includes(osids[2]!)), 'off: never checked');
    assert.ok((await diffJobs()).some((j) => JSON.stringify(j.spec).includes(osids[0]!)) && (await diffJobs()).some((j) => JSON.stringify(j.spec).includes(osids[1]!)));

    const del = await t.admin.request('DELETE', `/v1/instances/${osids[0]}`);
    assert.equal(del.status, 202);
    await agentRuns();
    const count = async () => (await diffJobs()).filter((j) => JSON.stringify(j.spec).includes(osids[0]!)).length;
    const n = await count();
    clock.advance(30 * MIN);
    await tick();
    await agentRuns();
    assert.equal(await count(), n, 'deleted: never checked again');
    assert.equal((await row(osids[0]!)).next_check_at, null);
  });

  it('/metrics: tether_instances by sync status, counting instances not deleted', async () => {
    const rows = await t.cp.db.selectFrom('instances').select(['sync_status', 'last_action']).execute();
    const expect = { synced: 0, drifted: 0, error: 0, unknown: 0 };
    for (const r of rows) if (r.last_action === 'apply') expect[r.sync_status ?? 'unknown']++;
    assert.ok(expect.drifted + expect.error + expect.synced > 0);
    assert.deepEqual(await metric('tether_instances'), Object.entries(expect).map(([s, n]) => `tether_instances{sync_status="${s}"} ${n}`));
  });

  it('the loop never dies: a check that cannot be submitted is logged and the others go on; a failing tick is logged and the next one runs', async () => {
    const osids = [await deploy(), await deploy()];
    await agentRuns();
    await makeDue(osids);
    // A fake BundlesService (what fails here cannot be made to fail for real): the first
    // submission throws, the second is counted. The rest (database, queue, clock) is the real one.
    const own = captureLogger();
    let calls = 0;
    const submitted: string[] = [];
    const failing = {
      diff: async (_aid: string, osid: string) => {
        if (calls++ === 0) throw new Error('cluster agent unreachable (fake)');
        submitted.push(osid);
        return { osid, jobId: 0 };
      },
    } as unknown as BundlesService;
    const s = new DriftScheduler({ db: t.cp.db, clock, log: own.log, queue: t.cp.queue, bundles: failing, metrics: t.cp.metrics, settings: { defaultIntervalSeconds: 600, checksPerTick: 2 } });
    try {
      await s.tick();
      assert.equal(calls, 2);
      assert.equal(submitted.length, 1, 'the first failed, the next was still submitted');
      assert.match(own.text(), /"err":\{[^]*cluster agent unreachable \(fake\)[^]*scheduled drift check not submitted/);
    } finally {
      await s.stop();
    }
    // A tick that fails as a whole (its database is gone: a fake Db whose every query throws).
    const broken = new Proxy({}, { get: () => () => { throw new Error('database is closed (fake)'); } }) as unknown as Db;
    const loop = new DriftScheduler({ db: broken, clock, log: own.log, queue: t.cp.queue, bundles: failing, metrics: t.cp.metrics, settings: { defaultIntervalSeconds: 600, checksPerTick: 2 }, tickMs: 100 });
    loop.start();
    try {
      await eventually(() => (own.text().match(/drift check tick failed/g) ?? []).length >= 3, 10_000, 'three failed ticks, each followed by the next');
      assert.match(own.text(), /"err":\{[^]*database is closed \(fake\)[^]*drift check tick failed/);
    } finally {
      await loop.stop();
    }
  });

  it('settings: 4xx JSON for bad values, unknown and deleted instances; tether instances set', async () => {
    const osid = await deploy();
    await agentRuns();
    for (const bad of [{}, { driftCheck: { intervalSeconds: 59 } }, { driftCheck: { intervalSeconds: 86_401 } }, { driftCheck: 'sometimes' }, { autoSync: 'yes' }, { autoSync: true, extra: 1 }, [], 'off']) {
      const r = await t.admin.request<{ error: { code: string; message: string } }>('PATCH', `/v1/instances/${osid}`, bad, { accept: [400] });
      assert.equal(r.status, 400, JSON.stringify(bad));
      assert.equal(typeof r.body.error.code, 'string');
      assert.equal(typeof r.body.error.message, 'string');
    }
    assert.equal((await t.admin.request('PATCH', '/v1/instances/web-zzzzz', { autoSync: true }, { accept: [404] })).status, 404);
    const { osid: deleted } = await t.cp.db.selectFrom('instances').select('osid').where('last_action', '=', 'delete').executeTakeFirstOrThrow();
    const d = await t.admin.request<{ error: { code: string } }>('PATCH', `/v1/instances/${deleted}`, { autoSync: true }, { accept: [409] });
    assert.equal(d.status, 409);
    assert.equal(d.body.error.code, 'instance_deleted');

    const ok = await runCli(['instances', 'set', osid, '--drift-interval', '2h', '--auto-sync', 'on'], cli);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /drift check\s+every 7200s/);
    assert.match(ok.stdout, /auto sync\s+on/);
    assert.deepEqual((await instance(osid)).driftCheck, { intervalSeconds: 7200 });
    const list = await runCli(['instances', 'list'], cli);
    assert.match(list.stdout, /NEXT CHECK/);
    for (const args of [['--drift-interval', '30s'], ['--drift-interval', '2d'], ['--auto-sync', 'maybe'], []]) {
      const r = await runCli(['instances', 'set', osid, ...args], cli);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    }
    const off = await runCli(['instances', 'set', osid, '--drift-interval', 'off'], cli);
    assert.equal(off.code, 0, off.stderr);
    assert.equal((await instance(osid)).driftCheck, 'off');
  });
});
