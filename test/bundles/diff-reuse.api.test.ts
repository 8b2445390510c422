/**
 * A manual drift check while one of the instance's own is outstanding (POST /v1/instances/{osid}/diff
 * with the first still queued) answers that job — 200, its id, `reused: true` — instead of queuing
 * a duplicate; checks asked for at once queue one job between them. A check of another desired
 * state (--file) is its own job. Real migrated database over HTTPS, a real git source, no agent
 * (jobs stay queued; cancelling one ends it).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { CommandView } from '../../common/wire.ts';
import type { DeployResponse, DiffResponse, InstanceView } from '../../control-plane/bundles/bundles.wire.ts';
import { removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { bareRepo } from '../cluster-agent/support.ts';

const CID = 'diffreuse';
const BUNDLE = 'name: stack\nversion: 1.0.0\ntype: stk\ninputs:\n  message: {type: string, default: hello}\nresources:\n  - name: config\n    type: manifest\n    source: manifests\n';

describe('bundles: a manual diff while one is outstanding reuses it', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let dir: string;
  let osid: string;

  const cancel = (id: number) => t.admin.request('POST', `/v1/commands/${id}/cancel`);
  const commandCount = async () => (await t.admin.request<{ commands: CommandView[] }>('GET', `/v1/commands?cluster=${CID}&limit=200`)).body.commands.length;
  const diff = (body?: unknown) => t.admin.request<DiffResponse>('POST', `/v1/instances/${osid}/diff`, body);

  before(async () => {
    dir = tempDir('tether-diff-reuse-');
    t = await startTestControlPlane({ dataDir: join(dir, 'cp'), allowFileRoots: [dir] });
    await t.createCluster(CID);
    const repo = bareRepo(dir, 'stacks');
    repo.commit({ 'stack/bundle.yaml': BUNDLE, 'stack/manifests/settings.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n' });
    await t.admin.request('POST', '/v1/bundles', { name: 'stack', url: repo.url, ref: 'main', path: 'stack' });
    const r = await t.admin.request<DeployResponse>('POST', '/v1/instances', { bundle: 'stack', cluster: CID, inputs: {} });
    osid = r.body.osid;
    await cancel(r.body.jobId);
  });
  after(async () => {
    await t?.close();
    if (dir) removeDir(dir);
  });

  it('answers the outstanding check (200, same job, reused) and queues nothing', async () => {
    const first = await diff();
    assert.equal(first.status, 202);
    const count = await commandCount();
    const second = await diff();
    assert.equal(second.status, 200, 'the outstanding check is answered');
    assert.equal(second.body.jobId, first.body.jobId);
    assert.equal(second.body.reused, true);
    assert.deepEqual(second.body.prune, []);
    assert.equal(await commandCount(), count, 'no duplicate queued');
    assert.equal(first.body.reused, false);
    // Once it ended (cancelled here), a check is queued again.
    await cancel(first.body.jobId);
    const third = await diff();
    assert.equal(third.status, 202);
    assert.notEqual(third.body.jobId, first.body.jobId);
    await cancel(third.body.jobId);
  });

  it('checks asked for at once queue one job between them', async () => {
    const count = await commandCount();
    const all = await Promise.all(Array.from({ length: 4 }, () => diff()));
    assert.equal(new Set(all.map((r) => r.body.jobId)).size, 1, `one job: ${all.map((r) => r.body.jobId).join(', ')}`);
    assert.deepEqual(all.map((r) => r.status).sort(), [200, 200, 200, 202]);
    assert.equal(await commandCount(), count + 1);
    const v = (await t.admin.request<InstanceView>('GET', `/v1/instances/${osid}`)).body;
    assert.equal(v.syncStatus, 'error', 'the last (cancelled) check is what the instance shows until this one ends');
    await cancel(all[0]!.body.jobId);
  });

  it('a check of another desired state (--file) is its own job, even with the own check outstanding', async () => {
    const own = await diff();
    assert.equal(own.status, 202);
    const other = await diff({ inputs: { message: 'other' } });
    assert.equal(other.status, 202);
    assert.equal(other.body.reused, false);
    assert.notEqual(other.body.jobId, own.body.jobId);
    // …and the own check is still the outstanding one.
    assert.equal((await diff()).body.jobId, own.body.jobId);
    await cancel(own.body.jobId);
    await cancel(other.body.jobId);
  });
});
