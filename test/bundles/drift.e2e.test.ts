/**
 * Scheduled drift checks and autoSync end to end (issue 13, part B): a bundle (a ConfigMap as a
 * plain manifest) deployed through a real cluster agent process to a real kube-apiserver. Nobody
 * calls diff: the control plane's scheduler (ticked by the test, on an injected clock moved past
 * each due time instead of sleeping) checks it: synced; the ConfigMap deleted by hand, the next
 * scheduled check finds it drifted, autoSync submits the sync itself, the ConfigMap is back, and
 * the next scheduled check is synced.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ManualClock } from '../../common/clock.ts';
import type { DeployResponse, InstanceView } from '../../control-plane/bundles/bundles.wire.ts';
import { kubeRequest, startEnvtest, type Envtest } from '../support/envtest.ts';
import { removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { CONFIG_BUNDLE } from '../support/bundles.ts';
import { bareRepo, createNamespace, jobLogs, spawnAgent, waitForJob, type AgentProcess } from '../cluster-agent/support.ts';

const CID = 'driftauto';
const AGENT_NS = 'tether-system';

describe('bundles: scheduled drift checks and autoSync (end to end)', function () {
  this.timeout(300_000);
  const clock = new ManualClock(Date.now());
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let agent: AgentProcess | undefined;
  let osid: string;

  const row = async () => t.cp.db.selectFrom('instances').selectAll().where('osid', '=', osid).executeTakeFirstOrThrow();
  const ended = async (id: number, want = 'succeeded') => {
    const v = await waitForJob(t, id, 150_000);
    if (v.state !== want) assert.fail(`job ${id} ended ${v.state}: ${JSON.stringify(v.error)}\nlogs:\n${await jobLogs(t, id)}`);
    await t.cp.drift.settled();
    return v;
  };
  /** Moves the clock past the instance's next due time and ticks: returns the diff job submitted. */
  const scheduledCheck = async () => {
    const before = (await row()).sync_job_id;
    const due = (await row()).next_check_at;
    assert.ok(due !== null, 'a check is scheduled');
    clock.set(Math.max(clock.now(), due) + 1);
    await t.cp.drift.tick();
    const id = (await row()).sync_job_id;
    assert.ok(id !== null && id !== before, 'the scheduler submitted a diff');
    return id;
  };
  const configMap = () => kubeRequest(env, 'GET', `/api/v1/namespaces/${osid}/configmaps/settings`);

  before(async function () {
    dir = tempDir('tether-drift-e2e-');
    [env, t] = await Promise.all([
      startEnvtest(),
      startTestControlPlane({ dataDir: join(dir, 'cp'), allowFileRoots: [dir] }, { clock, reaper: false, driftScheduler: false }),
    ]);
    await t.createCluster(CID);
    await createNamespace(env, AGENT_NS);
    const repo = bareRepo(dir, 'stacks');
    repo.commit(CONFIG_BUNDLE);
    await t.admin.request('POST', '/v1/bundles', { name: 'cfg', url: repo.url, ref: 'main', path: 'cfg' });
    agent = spawnAgent({ t, env, namespace: AGENT_NS, workDir: join(dir, 'work'), token: await t.bootstrapToken(CID, 'cluster-agent') });
    await agent.waitForLog(/cluster agent running/);
    const r = await t.admin.request<DeployResponse>('POST', '/v1/instances', { bundle: 'cfg', cluster: CID });
    osid = r.body.osid;
    await ended(r.body.jobId);
    const set = await t.admin.request<InstanceView>('PATCH', `/v1/instances/${osid}`, { autoSync: true });
    assert.equal(set.body.autoSync, true);
  });

  after(async function () {
    await agent?.stop();
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  it('the first scheduled check of a fresh deployment: synced', async () => {
    await t.cp.drift.tick(); // places it
    await ended(await scheduledCheck());
    assert.equal((await row()).sync_status, 'synced');
  });

  it('deleted by hand: the next scheduled check finds it drifted, autoSync repairs it, the check after is synced', async () => {
    const del = await kubeRequest(env, 'DELETE', `/api/v1/namespaces/${osid}/configmaps/settings`);
    assert.equal(del.status, 200, del.text);
    const versionBefore = (await t.admin.request<InstanceView>('GET', `/v1/instances/${osid}`)).body.version;
    const check = await scheduledCheck();
    await ended(check);
    const r = await row();
    assert.equal(r.sync_status, 'drifted', 'found by the scheduled check, nobody called diff');
    assert.equal(r.checked_job_id, check);
    assert.ok(r.auto_sync_job_id !== null, 'autoSync submitted a sync');
    assert.equal(r.last_job_id, r.auto_sync_job_id, "the sync is the instance's job now");
    await ended(r.auto_sync_job_id);
    const view = (await t.admin.request<InstanceView>('GET', `/v1/instances/${osid}`)).body;
    assert.equal(view.version, versionBefore + 1);
    assert.equal(view.state, 'deployed');
    const cm = await configMap();
    assert.equal(cm.status, 200, 'the ConfigMap is back');
    assert.equal((JSON.parse(cm.text) as { data: { greeting: string } }).data.greeting, 'hello');

    await ended(await scheduledCheck());
    const after = await row();
    assert.equal(after.sync_status, 'synced');
    assert.equal(after.auto_sync_job_id, null, 'the synced check forgets the autoSync');
    const metrics = await t.cp.metrics.registry.metrics();
    assert.match(metrics, /^tether_drift_checks_total\{result="synced"\} 2$/m);
    assert.match(metrics, /^tether_drift_checks_total\{result="drifted"\} 1$/m);
    assert.match(metrics, /^tether_auto_syncs_total 1$/m);
    assert.match(metrics, /^tether_instances\{sync_status="synced"\} 1$/m);
  });
});
