/**
 * A prune changes `syncStatus`: after a sync whose flow prunes (removes a resource the previous
 * version had) ends, the instance is `synced` when it succeeded and `unknown` when it did not;
 * and a check that finds every step in sync while a resource is still to be removed (the pruning
 * sync failed) records `drifted`, as `tether diff` reports it. Real control plane (TLS, migrated
 * database), a real git source, a scripted agent over the real agent API (poll, result): apply
 * flows end as the test says, diff flows report every step in sync.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { DeployResponse, DiffResponse, InstanceView } from '../../control-plane/bundles/bundles.wire.ts';
import { removeDir, startTestControlPlane, tempDir, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';
import { bareRepo } from '../cluster-agent/support.ts';

const CID = 'prunest';
const bundle = (resources: string) => `name: stack\nversion: 1.0.0\ntype: stk\ninputs:\n  message: {type: string, default: hello}\nresources:\n${resources}`;
const MANIFEST = '  - name: config\n    type: manifest\n    source: manifests\n';
const HELM = '  - name: app\n    type: helm\n    source: chart\n    dependsOn: [config]\n    values:\n      message: {inputRef: message}\n';

describe('bundles: a prune changes syncStatus', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let dir: string;
  let agent: TestAgent;
  let osid: string;
  const commits: string[] = [];

  const instance = async () => (await t.admin.request<InstanceView>('GET', `/v1/instances/${osid}`)).body;
  /** The agent runs the one queued job: an apply flow ends as `apply` says, a diff flow finds every step in sync. */
  async function agentRuns(apply: 'succeeded' | 'failed'): Promise<'apply' | 'diff'> {
    const { command } = await agent.client.poll(5);
    assert.ok(command, 'a job to run');
    const steps = (command.spec as { steps: { name: string; type: string }[] }).steps;
    const diff = steps[0]?.type === 'diff';
    if (diff) {
      const summary = { inSync: 1, drifted: 0, missing: 0, error: 0 };
      await agent.client.report(command.id, { leaseId: command.leaseId, outcome: 'succeeded', outputs: { steps: steps.map((s) => ({ name: s.name, state: 'succeeded', outputs: { summary } })) } });
    } else if (apply === 'succeeded') await agent.client.report(command.id, { leaseId: command.leaseId, outcome: 'succeeded', outputs: { steps: [] } });
    else await agent.client.report(command.id, { leaseId: command.leaseId, outcome: 'failed', error: { code: 'step_failed', message: 'helm uninstall failed', retryable: false } });
    await t.cp.drift.settled();
    return diff ? 'diff' : 'apply';
  }
  async function check(): Promise<DiffResponse> {
    const r = (await t.admin.request<DiffResponse>('POST', `/v1/instances/${osid}/diff`)).body;
    assert.equal(await agentRuns('succeeded'), 'diff');
    return r;
  }

  before(async () => {
    dir = tempDir('tether-prune-status-');
    t = await startTestControlPlane({ dataDir: join(dir, 'cp'), allowFileRoots: [dir] }, { reaper: false, driftScheduler: false });
    await t.createCluster(CID);
    const repo = bareRepo(dir, 'stacks');
    commits.push(
      repo.commit({
        'stack/bundle.yaml': bundle(MANIFEST + HELM),
        'stack/manifests/settings.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n',
        'stack/chart/Chart.yaml': 'apiVersion: v2\nname: app\nversion: 0.1.0\n',
        'stack/chart/templates/configmap.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n',
      }),
    );
    await t.admin.request('POST', '/v1/bundles', { name: 'stack', url: repo.url, ref: 'main', path: 'stack' });
    agent = await t.agent(CID, 'cluster-agent');
    osid = (await t.admin.request<DeployResponse>('POST', '/v1/instances', { bundle: 'stack', cluster: CID, inputs: {} })).body.osid;
    assert.equal(await agentRuns('succeeded'), 'apply');
    // The next commit drops the helm resource: a sync to it prunes the release.
    commits.push(repo.commit({ 'stack/bundle.yaml': bundle(MANIFEST), 'stack/chart/Chart.yaml': null, 'stack/chart/templates/configmap.yaml': null }, 'next'));
  });
  after(async () => {
    agent?.client.close();
    await t?.close();
    if (dir) removeDir(dir);
  });

  it('synced after a check; unknown once a pruning sync failed; drifted on the next check; synced once the pruning sync succeeded', async () => {
    assert.deepEqual((await check()).prune, []);
    assert.equal((await instance()).syncStatus, 'synced');

    // A sync that removes the helm release, and fails.
    await t.admin.request('POST', `/v1/instances/${osid}/sync`, { commit: commits[1] });
    assert.equal(await agentRuns('failed'), 'apply');
    assert.equal((await instance()).syncStatus, 'unknown', 'what the failed prune left is not known');

    // Every step compares in sync, but the release is still to be removed.
    const pending = await check();
    assert.deepEqual(pending.prune, [{ name: 'app', type: 'helm', action: 'helm uninstall' }]);
    assert.equal((await instance()).syncStatus, 'drifted', 'a resource still to be pruned is drift');

    // The same sync again, succeeding: synced at once, before any check.
    await t.admin.request('POST', `/v1/instances/${osid}/sync`);
    assert.equal(await agentRuns('succeeded'), 'apply');
    const synced = await instance();
    assert.equal(synced.syncStatus, 'synced', 'the pruning sync succeeded');
    assert.ok(synced.lastCheckedAt, 'checked at its end');

    assert.deepEqual((await check()).prune, []);
    assert.equal((await instance()).syncStatus, 'synced');
  });
});
