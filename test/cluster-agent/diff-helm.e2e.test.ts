/**
 * The `diff` command's helm target against a real kube-apiserver with real helm: a release
 * installed with a `helm` command is in sync; a value Tether set edited by hand in a rendered
 * object is drifted; a `helm rollback` by hand after an upgrade leaves the release drifted naming
 * the revision; no release is missing. A value from a secretRef (in a Secret and a ConfigMap) is
 * compared inside the agent and never reaches the control plane.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { kubeRequest, startEnvtest, type Envtest } from '../support/envtest.ts';
import { removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { toolPath } from '../support/toolchain.ts';
import { bareRepo, createNamespace, createSecret, jobLogs, kubeGet, runJob, spawnAgent, type AgentProcess } from './support.ts';

const execFileP = promisify(execFile);
const CID = 'helmdiff';
const NS = 'tether-system';
const APP = 'web';
const CANARY = 'pa55-canary-from-secret-4410';
const HAND = 'edited-by-hand';

const CHART = {
  'charts/hello/Chart.yaml': 'apiVersion: v2\nname: hello\nversion: 0.1.0\nappVersion: "1.0"\n',
  'charts/hello/values.yaml': 'greeting: hello\npassword: ""\n',
  'charts/hello/templates/configmap.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata:\n  greeting: {{ .Values.greeting | quote }}\n',
  'charts/hello/templates/secret.yaml': 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}-creds\ndata:\n  password: {{ .Values.password | b64enc | quote }}\n',
};

interface Resource {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  status: string;
  diff?: string;
  revision?: number;
}
interface HelmDiffOutputs {
  resources: Resource[];
  summary: { inSync: number; drifted: number; missing: number; error: number };
}

describe('cluster agent diff of a helm release (end to end)', function () {
  this.timeout(180_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let agent: AgentProcess | undefined;
  let spec: { release: string; namespace: string; chart: unknown; values: Record<string, unknown> };
  const jobIds: number[] = [];

  async function diff(s: unknown = spec): Promise<HelmDiffOutputs> {
    const v = await runJob(t, CID, 'diff', { target: 'helm', spec: s });
    jobIds.push(v.id);
    assert.ok(!JSON.stringify(v).includes(CANARY), 'the secret value never reaches the control plane');
    return v.outputs as unknown as HelmDiffOutputs;
  }
  const byKind = (o: HelmDiffOutputs, kind: string) => o.resources.find((r) => r.kind === kind) ?? assert.fail(`no ${kind} in ${JSON.stringify(o)}`);
  const helmByHand = (args: string[]) => execFileP(toolPath('helm'), [...args, `--namespace=${APP}`, `--kubeconfig=${env.kubeconfigPath}`]);

  before(async function () {
    dir = tempDir('tether-helm-diff-');
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp') })]);
    await t.createCluster(CID);
    await createNamespace(env, NS);
    await createNamespace(env, APP);
    await createSecret(env, APP, 'db-credentials', { password: CANARY });
    const repo = bareRepo(dir, 'charts');
    repo.commit(CHART);
    spec = {
      release: 'hello',
      namespace: APP,
      chart: { git: { url: repo.url, ref: 'main', path: 'charts/hello' } },
      values: { greeting: 'bonjour', password: { secretRef: { name: 'db-credentials', key: 'password' } } },
    };
    agent = spawnAgent({ t, env, namespace: NS, workDir: join(dir, 'work'), token: await t.bootstrapToken(CID, 'cluster-agent') });
    await agent.waitForLog(/cluster agent running/);
  });

  after(async function () {
    await agent?.stop('SIGKILL');
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  it('reports a release that is not installed as missing, its objects too', async () => {
    const d = await diff();
    assert.deepEqual(d.resources.map((r) => [r.kind, r.name, r.status]), [['Release', 'hello', 'missing'], ['Secret', 'hello-creds', 'missing'], ['ConfigMap', 'hello-config', 'missing']]);
  });

  it('reports a release installed with a helm command as in sync', async () => {
    const installed = await runJob(t, CID, 'helm', spec);
    jobIds.push(installed.id);
    const d = await diff();
    assert.deepEqual(byKind(d, 'Release'), { apiVersion: 'helm.sh/v3', kind: 'Release', namespace: APP, name: 'hello', status: 'in-sync', revision: 1 });
    assert.deepEqual(d.summary, { inSync: 3, drifted: 0, missing: 0, error: 0 }, JSON.stringify(d));
    // The ownership the diff relies on: helm 3 writes with client-side apply as the manager "helm".
    const cm = await kubeGet<{ metadata: { managedFields: { manager: string; operation: string }[] } }>(env, `/api/v1/namespaces/${APP}/configmaps/hello-config`);
    assert.deepEqual(cm?.metadata.managedFields.map((f) => [f.manager, f.operation]), [['helm', 'Update']]);
  });

  it('reports a value Tether set, edited by hand in a rendered object, as drifted; a Secret by key only', async () => {
    for (const [path, body] of [
      [`/api/v1/namespaces/${APP}/configmaps/hello-config`, { data: { greeting: HAND } }],
      [`/api/v1/namespaces/${APP}/secrets/hello-creds`, { data: { password: Buffer.from(`secret-${HAND}`).toString('base64') } }],
    ] as const) {
      const r = await kubeRequest(env, 'PATCH', `${path}?fieldManager=kubectl-edit`, body, { contentType: 'application/merge-patch+json' });
      assert.equal(r.status, 200, r.text);
    }
    const d = await diff();
    assert.equal(byKind(d, 'Release').status, 'in-sync');
    const cm = byKind(d, 'ConfigMap');
    assert.equal(cm.status, 'drifted');
    assert.match(cm.diff!, new RegExp(`-\\s+greeting: ${HAND}`));
    assert.match(cm.diff!, /\+\s+greeting: bonjour/);
    const secret = byKind(d, 'Secret');
    assert.equal(secret.status, 'drifted');
    assert.equal(secret.diff, 'data.password: (changed)\n');
    const live = await kubeGet<{ data: Record<string, string> }>(env, `/api/v1/namespaces/${APP}/configmaps/hello-config`);
    assert.equal(live?.data.greeting, HAND, 'the diff changed nothing');
  });

  it('after an upgrade and a helm rollback by hand, reports the release drifted naming the revision', async () => {
    const upgraded = await runJob(t, CID, 'helm', { ...spec, values: { ...spec.values, greeting: 'hallo' } });
    jobIds.push(upgraded.id);
    assert.equal(upgraded.outputs?.revision, 2);
    const after = await diff({ ...spec, values: { ...spec.values, greeting: 'hallo' } });
    assert.deepEqual(byKind(after, 'Release'), { apiVersion: 'helm.sh/v3', kind: 'Release', namespace: APP, name: 'hello', status: 'in-sync', revision: 2 });
    assert.equal(byKind(after, 'ConfigMap').status, 'in-sync', JSON.stringify(after));

    await helmByHand(['rollback', 'hello', '1']);
    const d = await diff({ ...spec, values: { ...spec.values, greeting: 'hallo' } });
    const release = byKind(d, 'Release');
    assert.equal(release.status, 'drifted');
    assert.equal(release.revision, 3);
    assert.equal(release.diff, 'the deployed revision 3 was not made by Tether (Rollback to 1)\n');
    assert.equal(byKind(d, 'ConfigMap').status, 'drifted', 'revision 1 said bonjour, the spec says hallo');
  });

  it('never sends the secretRef value to the control plane', async () => {
    assert.equal(jobIds.length, 7, 'every job ran');
    for (const id of jobIds) assert.ok(!(await jobLogs(t, id)).includes(CANARY), `job ${id} printed the secret value`);
  });
});
