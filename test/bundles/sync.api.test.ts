/**
 * Sync, --file states and resource pruning through the API (issue 13), on a real migrated
 * database over HTTPS with a real git source, without an agent (queued jobs are cancelled to end
 * them): POST /v1/instances/{osid}/diff and /sync with a body {commit?, inputs?} refuse a commit
 * the source does not have (422, nothing queued), a malformed body (400) and unknown inputs;
 * a diff of another state answers what it would prune and leaves the instance's syncStatus
 * alone; a sync to a state without a resource becomes the next version (action sync) whose flow
 * removes that resource after the new steps, compiled from the previous commit, and again while
 * no apply since the version that had it succeeded.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { CommandView } from '../../common/wire.ts';
import type { DeployResponse, DiffResponse, InstanceVersionView, InstanceView } from '../../control-plane/bundles/bundles.wire.ts';
import { removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { bareRepo, type BareRepo } from '../cluster-agent/support.ts';

const CID = 'syncapi';
const bundle = (resources: string) => `name: stack\nversion: 1.0.0\ntype: stk\ninputs:\n  message: {type: string, default: hello}\nresources:\n${resources}`;
const MANIFEST = '  - name: config\n    type: manifest\n    source: manifests\n';
const HELM = '  - name: app\n    type: helm\n    source: chart\n    dependsOn: [config]\n    values:\n      message: {inputRef: message}\n';

interface Step {
  name: string;
  type: string;
  spec: { action?: string; chart?: { git: { ref: string } }; source?: { git: { ref: string } } };
}

describe('bundles: sync and --file states through the API (pruning of resources)', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let dir: string;
  let repo: BareRepo;
  let osid: string;
  const commits: string[] = [];

  const command = async (id: number) => (await t.admin.request<CommandView>('GET', `/v1/commands/${id}`)).body;
  const steps = async (id: number) => ((await command(id)).spec as { steps: Step[] }).steps;
  const cancel = async (id: number) => {
    await t.admin.request('POST', `/v1/commands/${id}/cancel`);
    assert.equal((await command(id)).state, 'cancelled');
  };
  const commandCount = async () => (await t.admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?limit=200')).body.commands.length;
  const refused = async (path: string, body: unknown, status: number) => {
    const r = await t.admin.request<{ error: { code: string; message: string } }>('POST', path, body, { accept: [status] });
    assert.equal(r.status, status, JSON.stringify(r.body));
    return r.body.error;
  };

  before(async () => {
    dir = tempDir('tether-sync-api-');
    t = await startTestControlPlane({ dataDir: join(dir, 'cp'), allowFileRoots: [dir] });
    await t.createCluster(CID);
    repo = bareRepo(dir, 'stacks');
    commits.push(
      repo.commit({
        'stack/bundle.yaml': bundle(MANIFEST + HELM),
        'stack/manifests/settings.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: auto\n',
        'stack/chart/Chart.yaml': 'apiVersion: v2\nname: app\nversion: 0.1.0\n',
        'stack/chart/templates/configmap.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  message: {{ .Values.message | quote }}\n',
      }),
    );
    await t.admin.request('POST', '/v1/bundles', { name: 'stack', url: repo.url, ref: 'main', path: 'stack' });
    const r = await t.admin.request<DeployResponse>('POST', '/v1/instances', { bundle: 'stack', cluster: CID, inputs: {} });
    osid = r.body.osid;
    // A second commit drops the helm resource (not on any branch the instance was deployed from).
    commits.push(repo.commit({ 'stack/bundle.yaml': bundle(MANIFEST), 'stack/chart/Chart.yaml': null, 'stack/chart/templates/configmap.yaml': null }, 'next'));
  });
  after(async () => {
    await t?.close();
    if (dir) removeDir(dir);
  });

  it('refuses a commit the source does not have (422), a malformed body (400) and unknown inputs, queueing nothing', async () => {
    await cancel((await t.admin.request<InstanceView>('GET', `/v1/instances/${osid}`)).body.job.id);
    const before = await commandCount();
    for (const route of ['diff', 'sync']) {
      const e = await refused(`/v1/instances/${osid}/${route}`, { commit: 'f'.repeat(40) }, 422);
      assert.equal(e.code, 'bundle_source_unavailable', `${route}: ${e.message}`);
      assert.equal((await refused(`/v1/instances/${osid}/${route}`, { commit: 'main' }, 400)).code, 'invalid_request');
      assert.equal((await refused(`/v1/instances/${osid}/${route}`, { inputs: {}, extra: 1 }, 400)).code, 'invalid_request');
    }
    assert.equal((await refused(`/v1/instances/${osid}/diff`, { inputs: { nope: 'x' } }, 400)).code, 'invalid_inputs');
    assert.equal(await commandCount(), before, 'nothing queued');
  });

  it("a diff of another state (a commit of the source, fetched by id) answers what it would prune; the instance's own status is left alone", async () => {
    const r = await t.admin.request<DiffResponse>('POST', `/v1/instances/${osid}/diff`, { commit: commits[1], inputs: { message: 'two' } });
    assert.equal(r.status, 202);
    assert.deepEqual(r.body.prune, [{ name: 'app', type: 'helm', action: 'helm uninstall' }]);
    assert.deepEqual((await steps(r.body.jobId)).map((s) => [s.name, s.type]), [['tether-namespace', 'diff'], ['config', 'diff']]);
    await cancel(r.body.jobId);
    assert.equal((await t.admin.request<InstanceView>('GET', `/v1/instances/${osid}`)).body.syncStatus, 'unknown', 'a diff of another state is not recorded');
    const own = await t.admin.request<DiffResponse>('POST', `/v1/instances/${osid}/diff`);
    assert.deepEqual(own.body.prune, [], 'its own state prunes nothing');
    await cancel(own.body.jobId);
    const v = (await t.admin.request<InstanceView>('GET', `/v1/instances/${osid}`)).body;
    assert.equal(v.syncStatus, 'error', 'the instance records its own (cancelled) diff only');
  });

  it('a sync to that state is the next version (action sync) whose flow removes the helm resource after the new steps, from the previous commit', async () => {
    const r = await t.admin.request<DeployResponse>('POST', `/v1/instances/${osid}/sync`, { commit: commits[1], inputs: { message: 'two' } });
    assert.equal(r.status, 202);
    assert.equal(r.body.version, 2);
    const flow = await steps(r.body.jobId);
    assert.deepEqual(flow.map((s) => [s.name, s.type, s.spec.action ?? 'apply']), [['tether-namespace', 'manifest', 'apply'], ['config', 'manifest', 'apply'], ['app', 'helm', 'delete']]);
    assert.equal(flow[1]!.spec.source!.git.ref, commits[1]);
    assert.equal(flow[2]!.spec.chart!.git.ref, commits[0], 'the removal is compiled from the previous version');
    const versions = (await t.admin.request<{ versions: InstanceVersionView[] }>('GET', `/v1/instances/${osid}/versions`)).body.versions;
    assert.deepEqual(versions.map((v) => [v.version, v.action, v.bundle.commit, v.inputs.message]), [
      [1, 'deploy', commits[0], 'hello'],
      [2, 'sync', commits[1], 'two'],
    ]);
    assert.equal((await refused(`/v1/instances/${osid}/sync`, {}, 409)).code, 'instance_busy');
    await cancel(r.body.jobId);
    // That sync was cancelled, so the release may still be there: syncing again removes it again
    // (pruning looks back to the last succeeded apply; none has succeeded here).
    const again = await t.admin.request<DeployResponse>('POST', `/v1/instances/${osid}/sync`);
    const againFlow = await steps(again.body.jobId);
    assert.deepEqual(againFlow.map((s) => [s.name, s.spec.action ?? 'apply']), [['tether-namespace', 'apply'], ['config', 'apply'], ['app', 'delete']]);
    assert.equal(againFlow[2]!.spec.chart!.git.ref, commits[0], 'from version 1, the newest that has it');
    await cancel(again.body.jobId);
    // A rollback to version 1 brings the release back.
    const back = await t.admin.request<DeployResponse>('POST', `/v1/instances/${osid}/deploy`, { inputs: {}, version: 1 });
    assert.deepEqual((await steps(back.body.jobId)).map((s) => [s.name, s.spec.action ?? 'apply']), [['tether-namespace', 'apply'], ['config', 'apply'], ['app', 'apply']]);
    await cancel(back.body.jobId);
  });
});
