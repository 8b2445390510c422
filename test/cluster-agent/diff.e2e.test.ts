/**
 * The `diff` command end to end: a real control plane, a real kube-apiserver (envtest), the
 * cluster agent as a real process. Manifests applied with a `manifest` command, then changed by
 * hand (deleted, edited by another field manager, a Secret value replaced): each `diff` reports
 * what Tether owns, changes nothing, and never shows a Secret value.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { kubeRequest, startEnvtest, type Envtest } from '../support/envtest.ts';
import { removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { createNamespace, jobLogs, kubeGet, runJob, secretData, spawnAgent, type AgentProcess } from './support.ts';

const CID = 'alpha';
const NS = 'tether-system';
const TENANT = 'drift';
const CANARY = 'canary-9f1c2e7a-value';

const MANIFESTS = [
  'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n  size: large',
  [
    'apiVersion: apps/v1',
    'kind: Deployment',
    'metadata:',
    '  name: web',
    '  labels: {app: web}',
    'spec:',
    '  replicas: 2',
    '  selector: {matchLabels: {app: web}}',
    '  template:',
    '    metadata: {labels: {app: web}}',
    '    spec:',
    '      containers:',
    '        - name: app',
    '          image: nginx:1.27',
  ].join('\n'),
  'apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: original-password\n  user: admin',
].join('\n---\n');

interface DiffOutputs {
  resources: { apiVersion: string; kind: string; namespace?: string; name: string; status: string; diff?: string; error?: string }[];
  summary: { inSync: number; drifted: number; missing: number; error: number };
}

function databaseBytes(dataDir: string): Buffer {
  return Buffer.concat(['tether.db', 'tether.db-wal', 'tether.db-shm'].map((f) => join(dataDir, f)).filter(existsSync).map((f) => readFileSync(f)));
}

describe('cluster agent diff (end to end)', function () {
  this.timeout(180_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let agent: AgentProcess | undefined;
  const diffIds: number[] = [];

  async function diff(): Promise<DiffOutputs> {
    const v = await runJob(t, CID, 'diff', { target: 'manifest', spec: { manifests: MANIFESTS, namespace: TENANT } });
    diffIds.push(v.id);
    return v.outputs as unknown as DiffOutputs;
  }
  const byKind = (o: DiffOutputs, kind: string) => o.resources.find((r) => r.kind === kind)!;
  /** A merge patch by a field manager other than Tether's (as `kubectl edit` or a controller would). */
  async function patchAs(manager: string, path: string, body: unknown): Promise<void> {
    const r = await kubeRequest(env, 'PATCH', `${path}?fieldManager=${manager}`, body, { contentType: 'application/merge-patch+json' });
    assert.equal(r.status, 200, r.text);
  }

  before(async function () {
    dir = tempDir('tether-ca-diff-');
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp') })]);
    await t.createCluster(CID);
    await createNamespace(env, NS);
    await createNamespace(env, TENANT);
    agent = spawnAgent({ t, env, namespace: NS, workDir: join(dir, 'work'), token: await t.bootstrapToken(CID, 'cluster-agent') });
    await agent.waitForLog(/cluster agent running/);
    await runJob(t, CID, 'manifest', { manifests: MANIFESTS, namespace: TENANT });
  });

  after(async function () {
    await agent?.stop('SIGKILL');
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  it('finds everything just applied in sync', async () => {
    const o = await diff();
    assert.deepEqual(o.summary, { inSync: 3, drifted: 0, missing: 0, error: 0 });
    assert.deepEqual(o.resources.map((r) => [r.apiVersion, r.kind, r.namespace, r.name, r.status]), [
      ['v1', 'ConfigMap', TENANT, 'settings', 'in-sync'],
      ['apps/v1', 'Deployment', TENANT, 'web', 'in-sync'],
      ['v1', 'Secret', TENANT, 'creds', 'in-sync'],
    ]);
  });

  it('does not count fields set by another field manager as drift', async () => {
    await patchAs('someone-else', `/api/v1/namespaces/${TENANT}/configmaps/settings`, { metadata: { labels: { team: 'ops' } }, data: { extra: 'not ours' } });
    await patchAs('someone-else', `/apis/apps/v1/namespaces/${TENANT}/deployments/web`, { metadata: { annotations: { note: 'hand-made' } }, spec: { minReadySeconds: 5 } });
    const o = await diff();
    assert.deepEqual(o.summary, { inSync: 3, drifted: 0, missing: 0, error: 0 }, JSON.stringify(o.resources));
  });

  it('reports fields Tether owns edited by hand as drifted, with a diff naming them, and changes nothing', async () => {
    await patchAs('kubectl-edit', `/api/v1/namespaces/${TENANT}/configmaps/settings`, { data: { color: 'red' } });
    await patchAs('kubectl-edit', `/apis/apps/v1/namespaces/${TENANT}/deployments/web`, { spec: { replicas: 7 } });
    const o = await diff();
    assert.deepEqual(o.summary, { inSync: 1, drifted: 2, missing: 0, error: 0 });
    const cm = byKind(o, 'ConfigMap');
    assert.equal(cm.status, 'drifted');
    assert.match(cm.diff!, /^--- live\n\+\+\+ desired\n/);
    assert.match(cm.diff!, /^-  color: red$/m);
    assert.match(cm.diff!, /^\+  color: blue$/m);
    assert.doesNotMatch(cm.diff!, /extra|team/, 'fields of other managers are not in the diff');
    const dep = byKind(o, 'Deployment');
    assert.equal(dep.status, 'drifted');
    assert.match(dep.diff!, /^-  replicas: 7$/m);
    assert.match(dep.diff!, /^\+  replicas: 2$/m);
    assert.equal(byKind(o, 'Secret').status, 'in-sync');
    // A dry run only: the cluster keeps the edits.
    assert.equal((await kubeGet<{ data: Record<string, string> }>(env, `/api/v1/namespaces/${TENANT}/configmaps/settings`))?.data.color, 'red');
    assert.equal((await kubeGet<{ spec: { replicas: number } }>(env, `/apis/apps/v1/namespaces/${TENANT}/deployments/web`))?.spec.replicas, 7);
  });

  it('reports a Secret value changed by its key, never its value', async () => {
    await patchAs('kubectl-edit', `/api/v1/namespaces/${TENANT}/secrets/creds`, { data: { password: Buffer.from(CANARY).toString('base64') } });
    const o = await diff();
    const secret = byKind(o, 'Secret');
    assert.equal(secret.status, 'drifted');
    assert.equal(secret.diff, 'data.password: (changed)\n');
    assert.equal((await secretData(env, TENANT, 'creds'))?.password, CANARY, 'the dry run changed nothing');
  });

  it('reports a deleted object as missing', async () => {
    const r = await kubeRequest(env, 'DELETE', `/api/v1/namespaces/${TENANT}/configmaps/settings`);
    assert.equal(r.status, 200, r.text);
    const o = await diff();
    assert.equal(byKind(o, 'ConfigMap').status, 'missing');
    assert.equal(byKind(o, 'ConfigMap').diff, undefined);
    assert.deepEqual(o.summary, { inSync: 0, drifted: 2, missing: 1, error: 0 });
    assert.equal(await kubeGet(env, `/api/v1/namespaces/${TENANT}/configmaps/settings`), undefined, 'still missing: nothing was applied');
  });

  it('refuses a spec without a target at submission (invalid_spec, 400)', async () => {
    const r = await t.admin.request<{ error: { code: string; message: string } }>(
      'POST', '/v1/commands', { target: { cluster: CID }, type: 'diff', spec: { manifests: MANIFESTS }, maxAttempts: 1 }, { accept: [400] },
    );
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'invalid_spec');
  });

  it('never lets the changed Secret value out: not in the outputs, the logs, the agent\'s log or the database', async () => {
    const forms = [CANARY, Buffer.from(CANARY).toString('base64')];
    assert.equal(diffIds.length, 5, 'every diff above ran (the checks below are not vacuous)');
    assert.equal((await secretData(env, TENANT, 'creds'))?.password, CANARY, 'the canary is in the cluster');
    for (const id of diffIds) {
      const text = JSON.stringify((await t.admin.request('GET', `/v1/commands/${id}`)).body) + (await jobLogs(t, id));
      for (const f of forms) assert.ok(!text.includes(f), `job ${id} shows the canary`);
    }
    for (const f of forms) {
      assert.ok(!agent!.output().includes(f), 'the agent log shows the canary');
      assert.ok(!databaseBytes(t.dataDir).includes(f), 'the database holds the canary');
    }
  });
});
