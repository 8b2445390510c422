/**
 * The cluster agent end to end: a real control plane, a real kube-apiserver (envtest), the agent
 * as a real process. Bootstrap once and reuse the identity on restart; manifests with server-side
 * apply; helm releases from a chart in a git repository.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentView } from '../../common/wire.ts';
import { startEnvtest, type Envtest } from '../support/envtest.ts';
import { eventually, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { bareRepo, createNamespace, createSecret, jobLogs, kubeGet, runJob, secretData, spawnAgent, submit, waitForJob, type AgentProcess, type BareRepo } from './support.ts';

const CID = 'alpha';

function filesUnder(d: string): string[] {
  return readdirSync(d).flatMap((n) => {
    const p = join(d, n);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}
const NS = 'tether-system';

const CHART = {
  'charts/hello/Chart.yaml': 'apiVersion: v2\nname: hello\nversion: 0.1.0\nappVersion: "1.0"\n',
  'charts/hello/values.yaml': 'greeting: hello\npassword: ""\n',
  'charts/hello/templates/configmap.yaml': [
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata:',
    '  name: {{ .Release.Name }}-config',
    'data:',
    '  greeting: {{ .Values.greeting | quote }}',
    '  password: {{ .Values.password | quote }}',
    '',
  ].join('\n'),
};

describe('cluster agent (end to end)', function () {
  this.timeout(120_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let agent: AgentProcess | undefined;
  let repo: BareRepo;

  const start = (token?: string) => spawnAgent({ t, env, namespace: NS, workDir: join(dir, 'work'), token });
  const agents = async () => (await t.admin.request<{ agents: AgentView[] }>('GET', `/v1/agents?cluster=${CID}`)).body.agents;

  before(async function () {
    dir = tempDir('tether-ca-e2e-');
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp') })]);
    await t.createCluster(CID);
    await createNamespace(env, NS);
    repo = bareRepo(dir, 'charts');
    repo.commit(CHART);
    agent = start(await t.bootstrapToken(CID, 'cluster-agent'));
    await agent.waitForLog(/cluster agent running/);
  });

  after(async function () {
    await agent?.stop('SIGKILL');
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  it('bootstraps once: the identity Secret holds key, certificate and CA; the agent heartbeats', async () => {
    const id = await secretData(env, NS, 'tether-agent-identity');
    assert.ok(id, 'identity Secret exists');
    assert.match(id['tls.key']!, /BEGIN PRIVATE KEY/);
    assert.match(id['tls.crt']!, /BEGIN CERTIFICATE/);
    assert.equal(id['ca.crt']!.trim(), t.caPem.trim());
    const list = await eventually(async () => {
      const a = await agents();
      return a.length === 1 && a[0]!.lastHeartbeatAt ? a : undefined;
    }, 10_000, 'a heartbeat');
    assert.equal(list[0]!.role, 'cluster-agent');
    assert.equal(list[0]!.id, id['agent-id']);
    assert.match(agent!.output(), /bootstrapped; identity stored/);
    assert.doesNotMatch(agent!.output(), /BEGIN PRIVATE KEY|tether_bt_|bootstrapToken"/, 'no key or token in the agent log');
  });

  it('restarts from the stored identity without a second bootstrap (and without a token)', async () => {
    const before = await agents();
    assert.equal(await agent!.stop('SIGTERM'), 0, 'graceful exit on SIGTERM');
    agent = start(); // no bootstrap token at all
    await agent.waitForLog(/cluster agent running/);
    assert.match(agent.output(), /identity found in the cluster; skipping bootstrap/);
    assert.doesNotMatch(agent.output(), /bootstrapping with the token/);
    const startedAt = Date.now();
    const after = await eventually(async () => {
      const a = await agents();
      return a.length === 1 && a[0]!.lastHeartbeatAt && Date.parse(a[0]!.lastHeartbeatAt) >= startedAt - 500 ? a : undefined;
    }, 10_000, 'a heartbeat from the restarted agent');
    assert.equal(after[0]!.id, before[0]!.id, 'same agent identity');
  });

  it('applies manifests with server-side apply: namespace first, namespaced objects defaulted, reported as outputs', async () => {
    const manifests = [
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-settings\ndata:\n  mode: "blue"',
      'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tenant-a',
    ].join('\n---\n');
    const v = await runJob(t, CID, 'manifest', { manifests, namespace: 'tenant-a' });
    assert.deepEqual(v.outputs, {
      applied: [
        { apiVersion: 'v1', kind: 'Namespace', name: 'tenant-a' },
        { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'tenant-a', name: 'app-settings' },
      ],
    });
    const cm = await kubeGet<{ data: Record<string, string>; metadata: { managedFields: { manager: string; operation: string }[] } }>(env, '/api/v1/namespaces/tenant-a/configmaps/app-settings');
    assert.equal(cm?.data.mode, 'blue');
    assert.ok(cm!.metadata.managedFields.some((f) => f.manager === 'tether' && f.operation === 'Apply'), 'applied by field manager tether');

    // Applying again with a change updates in place.
    await runJob(t, CID, 'manifest', { manifests: manifests.replace('blue', 'green'), namespace: 'tenant-a' });
    assert.equal((await kubeGet<{ data: Record<string, string> }>(env, '/api/v1/namespaces/tenant-a/configmaps/app-settings'))?.data.mode, 'green');
  });

  it('applies a CRD and a custom resource of it in one command', async () => {
    const crd = [
      'apiVersion: apiextensions.k8s.io/v1',
      'kind: CustomResourceDefinition',
      'metadata: {name: widgets.example.com}',
      'spec:',
      '  group: example.com',
      '  scope: Namespaced',
      '  names: {plural: widgets, singular: widget, kind: Widget}',
      '  versions:',
      '  - name: v1',
      '    served: true',
      '    storage: true',
      '    schema: {openAPIV3Schema: {type: object, properties: {spec: {type: object, x-kubernetes-preserve-unknown-fields: true}}}}',
    ].join('\n');
    const widget = 'apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}';
    const ns = 'apiVersion: v1\nkind: Namespace\nmetadata: {name: widgets}';
    const v = await runJob(t, CID, 'manifest', { manifests: `${widget}\n---\n${crd}\n---\n${ns}`, namespace: 'widgets' });
    assert.deepEqual((v.outputs?.applied as { kind: string }[]).map((a) => a.kind), ['Namespace', 'CustomResourceDefinition', 'Widget']);
    const w = await kubeGet<{ spec: { size: number } }>(env, '/apis/example.com/v1/namespaces/widgets/widgets/w1');
    assert.equal(w?.spec?.size, 3, JSON.stringify(w));
  });

  it('applies inline manifests up to the 1 MiB limit (through the control plane, the poll and the agent\'s own validation)', async () => {
    const docs: string[] = ['apiVersion: v1\nkind: Namespace\nmetadata: {name: big-inline}'];
    for (let i = 0; i < 10; i++) docs.push(`apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big-${i}}\ndata: {blob: "${'x'.repeat(104_000)}"}`);
    const manifests = docs.join('\n---\n');
    assert.ok(Buffer.byteLength(manifests) > 1_000_000 && Buffer.byteLength(manifests) <= 1024 * 1024, String(Buffer.byteLength(manifests)));
    const v = await runJob(t, CID, 'manifest', { manifests, namespace: 'big-inline' });
    assert.equal((v.outputs?.applied as unknown[]).length, 11);
    assert.equal((await kubeGet<{ data: { blob: string } }>(env, '/api/v1/namespaces/big-inline/configmaps/big-9'))?.data.blob.length, 104_000);
  });

  it('checks every kind against discovery before applying anything: a typo fails naming its document, and nothing is applied', async () => {
    const manifests = [
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: before-typo}\ndata: {a: b}',
      'apiVersion: apps/v1\nkind: Deployement\nmetadata: {name: typo}\nspec: {}',
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: after-typo}\ndata: {a: b}',
    ].join('\n---\n');
    const started = Date.now();
    const v = await waitForJob(t, await submit(t, CID, 'manifest', { manifests, namespace: 'tenant-a' }, { maxAttempts: 3 }));
    console.log(`      (unknown kind: job finished ${Date.now() - started} ms after submission)`);
    assert.equal(v.state, 'failed');
    assert.deepEqual([v.error?.code, v.error?.retryable, v.attempts], ['unknown_kind', false, 1]);
    assert.match(v.error!.message, /document 2: the cluster does not serve kind Deployement in apps\/v1/);
    assert.equal(await kubeGet(env, '/api/v1/namespaces/tenant-a/configmaps/before-typo'), undefined, 'nothing before the typo was applied');
    assert.equal(await kubeGet(env, '/api/v1/namespaces/tenant-a/configmaps/after-typo'), undefined);
  });

  it('fails a manifest the API server refuses, naming the object, at once (permanent: not retried)', async () => {
    const id = await submit(t, CID, 'manifest', { manifests: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {key: [1, 2]}\n', namespace: 'tenant-a' }, { maxAttempts: 3 });
    const v = await waitForJob(t, id);
    assert.equal(v.state, 'failed');
    assert.equal(v.error?.code, 'kube_rejected', v.error?.message);
    assert.equal(v.error?.retryable, false);
    assert.equal(v.attempts, 1, 'a schema error is not retried up to maxAttempts');
    assert.match(v.error!.message, /ConfigMap tenant-a\/bad/);
  });

  it('installs a helm chart from a git repo, resolving a secretRef value, then upgrades it to revision 2', async () => {
    await createNamespace(env, 'web');
    await createSecret(env, 'web', 'db-credentials', { password: 'pa55-from-secret-7731' });
    const spec = {
      release: 'hello',
      namespace: 'web',
      chart: { git: { url: repo.url, ref: 'main', path: 'charts/hello' } },
      values: { greeting: 'bonjour', password: { secretRef: { name: 'db-credentials', key: 'password' } } },
    };
    const first = await runJob(t, CID, 'helm', spec);
    assert.deepEqual(first.outputs, { release: 'hello', namespace: 'web', revision: 1, status: 'deployed', chart: 'hello', chartVersion: '0.1.0', appVersion: '1.0' });
    const cm = await kubeGet<{ data: Record<string, string> }>(env, '/api/v1/namespaces/web/configmaps/hello-config');
    assert.deepEqual(cm?.data, { greeting: 'bonjour', password: 'pa55-from-secret-7731' });

    const second = await runJob(t, CID, 'helm', { ...spec, values: { ...spec.values, greeting: 'hallo' } });
    assert.equal(second.outputs?.revision, 2);
    assert.equal((await kubeGet<{ data: Record<string, string> }>(env, '/api/v1/namespaces/web/configmaps/hello-config'))?.data.greeting, 'hallo');
    assert.ok(await kubeGet(env, '/api/v1/namespaces/web/secrets/sh.helm.release.v1.hello.v2'), 'helm stored revision 2');

    for (const v of [first, second]) {
      const seen = JSON.stringify(v) + (await jobLogs(t, v.id));
      assert.ok(!seen.includes('pa55-from-secret-7731'), 'the secret value never reaches the control plane');
    }
    assert.deepEqual(readdirSync(join(dir, 'work', 'runs')), [], 'scratch folders (with the values file) are removed');
    for (const f of filesUnder(join(dir, 'work'))) assert.ok(!readFileSync(f, 'utf8').includes('pa55-from-secret-7731'), `${f} holds the secret`);
  });

  it('creates the namespace when asked, and pins a chart to a commit SHA (full or abbreviated)', async () => {
    const sha = repo.commit({ 'charts/hello/values.yaml': 'greeting: pinned\npassword: ""\n' });
    repo.commit({ 'charts/hello/values.yaml': 'greeting: later\npassword: ""\n' });
    const v = await runJob(t, CID, 'helm', { release: 'pinned', namespace: 'fresh-ns', createNamespace: true, chart: { git: { url: repo.url, ref: sha, path: 'charts/hello' } } });
    assert.equal(v.outputs?.revision, 1);
    assert.equal((await kubeGet<{ data: Record<string, string> }>(env, '/api/v1/namespaces/fresh-ns/configmaps/pinned-config'))?.data.greeting, 'pinned');
    // An abbreviated SHA cannot be fetched shallowly; the agent falls back to a full fetch.
    await runJob(t, CID, 'helm', { release: 'short', namespace: 'fresh-ns', chart: { git: { url: repo.url, ref: sha.slice(0, 10), path: 'charts/hello' } } });
    assert.equal((await kubeGet<{ data: Record<string, string> }>(env, '/api/v1/namespaces/fresh-ns/configmaps/short-config'))?.data.greeting, 'pinned');
  });

  it('fails clearly when a secretRef points to a missing Secret, and when the chart path leaves the repo', async () => {
    const missing = await waitForJob(t, await submit(t, CID, 'helm', {
      release: 'nosecret', namespace: 'web', chart: { git: { url: repo.url, ref: 'main', path: 'charts/hello' } },
      values: { password: { secretRef: { name: 'does-not-exist', key: 'x' } } },
    }));
    assert.equal(missing.state, 'failed');
    assert.equal(missing.error?.code, 'secret_not_found');
    assert.match(missing.error!.message, /web\/does-not-exist/);

    repo.commit({ 'charts/escape': { symlink: '/etc' } });
    const escape = await waitForJob(t, await submit(t, CID, 'helm', { release: 'escape', namespace: 'web', chart: { git: { url: repo.url, ref: 'main', path: 'charts/escape' } } }));
    assert.equal(escape.state, 'failed');
    assert.equal(escape.error?.code, 'invalid_path');
    assert.match(escape.error!.message, /leads outside the repository/);
  });

  it('does not retry permanent failures (a missing ref, a template error) and retries transient ones (an unreachable repository)', async () => {
    const chart = (ref: string, url = repo.url) => ({ release: 'classified', namespace: 'web', chart: { git: { url, ref, path: 'charts/hello' } } });
    const missingRef = await waitForJob(t, await submit(t, CID, 'helm', chart('no-such-branch'), { maxAttempts: 3 }));
    assert.equal(missingRef.state, 'failed');
    assert.deepEqual([missingRef.error?.code, missingRef.error?.retryable, missingRef.attempts], ['git_not_found', false, 1]);
    assert.match(missingRef.error!.message, /no-such-branch/);

    repo.commit({ 'charts/broken/Chart.yaml': 'apiVersion: v2\nname: broken\nversion: 0.1.0\n', 'charts/broken/templates/cm.yaml': 'kind: ConfigMap\ndata: {{ .Values.x | }}\n' });
    const template = await waitForJob(t, await submit(t, CID, 'helm', { ...chart('main'), chart: { git: { url: repo.url, ref: 'main', path: 'charts/broken' } } }, { maxAttempts: 3 }));
    assert.equal(template.state, 'failed');
    assert.deepEqual([template.error?.code, template.error?.retryable, template.attempts], ['helm_invalid', false, 1], template.error?.message);

    // Nothing listens on port 1 of loopback: a network failure, retried up to maxAttempts.
    const unreachable = await waitForJob(t, await submit(t, CID, 'helm', chart('main', 'https://127.0.0.1:1/charts.git'), { maxAttempts: 2 }));
    assert.equal(unreachable.state, 'failed');
    assert.deepEqual([unreachable.error?.code, unreachable.error?.retryable, unreachable.attempts], ['git_error', true, 2]);
  });
});
