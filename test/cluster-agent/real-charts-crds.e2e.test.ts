/**
 * The cluster agent with artefacts nobody here wrote, vendored unchanged under test/fixtures/:
 * podinfo's Helm chart installed, upgraded and uninstalled through `helm` commands;
 * cert-manager's CRD set (about 1 MB, files of 332 KB) applied through a manifest with a git
 * source, then custom resources of it; prometheus-operator's CRDs and custom resources of them in
 * one inline manifest. All against a real kube-apiserver.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startEnvtest, type Envtest } from '../support/envtest.ts';
import { eventually, REPO_ROOT, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { bareRepo, createNamespace, jobLogs, kubeGet, runJob, spawnAgent, submit, waitForJob, type AgentProcess, type BareRepo } from './support.ts';

const CID = 'real';
const NS = 'tether-system';
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures');

/** Every file under a fixture folder, as repository path -> content (the folder's own layout). */
function fixtureFiles(fixture: string, sub: string, into: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of readdirSync(join(FIXTURES, fixture, sub, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      if (statSync(join(FIXTURES, fixture, sub, r)).isDirectory()) walk(r);
      else out[`${into}/${r}`] = readFileSync(join(FIXTURES, fixture, sub, r), 'utf8');
    }
  };
  walk('');
  return out;
}

const crdFiles = (fixture: string) => readdirSync(join(FIXTURES, fixture, 'crds')).filter((f) => f.endsWith('.yaml')).sort();
/** The CRD names of a fixture: metadata.name of each file's CustomResourceDefinition. */
const crdNames = (fixture: string) =>
  crdFiles(fixture).map((f) => /^ {2}name: (\S+)$/m.exec(readFileSync(join(FIXTURES, fixture, 'crds', f), 'utf8'))?.[1] ?? assert.fail(`no name in ${f}`));

async function established(env: Envtest, name: string): Promise<boolean> {
  const crd = await kubeGet<{ status?: { conditions?: { type: string; status: string }[] } }>(env, `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
  return crd?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false;
}

interface Deployment {
  spec: { replicas: number; template: { spec: { containers: { image: string; env?: { name: string; value?: string }[] }[] } } };
}

describe('cluster agent with real public charts and CRDs (end to end)', function () {
  this.timeout(300_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let agent: AgentProcess | undefined;
  let repo: BareRepo;

  before(async function () {
    dir = tempDir('tether-real-');
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp') })]);
    await t.createCluster(CID);
    await createNamespace(env, NS);
    repo = bareRepo(dir, 'artefacts');
    repo.commit({ ...fixtureFiles('podinfo', 'chart', 'charts/podinfo'), ...fixtureFiles('cert-manager-crds', 'crds', 'cert-manager/crds') });
    agent = spawnAgent({ t, env, namespace: NS, workDir: join(dir, 'work'), token: await t.bootstrapToken(CID, 'cluster-agent') });
    await agent.waitForLog(/cluster agent running/);
  });

  after(async function () {
    await agent?.stop('SIGKILL');
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  it('installs, upgrades and uninstalls the public podinfo chart', async () => {
    await createNamespace(env, 'podinfo');
    const chart = { git: { url: repo.url, ref: 'main', path: 'charts/podinfo' } };
    const deployment = () => kubeGet<Deployment>(env, '/apis/apps/v1/namespaces/podinfo/deployments/web-podinfo');

    const installed = await runJob(t, CID, 'helm', { release: 'web', namespace: 'podinfo', chart, values: { replicaCount: 2 } });
    assert.equal(installed.outputs?.revision, 1);
    assert.equal(installed.outputs?.status, 'deployed');
    assert.equal(installed.outputs?.chart, 'podinfo');
    assert.equal(installed.outputs?.chartVersion, '6.14.1');
    const d1 = await deployment();
    assert.equal(d1?.spec.replicas, 2);
    assert.match(d1!.spec.template.spec.containers[0]!.image, /podinfo:6\.14\.1$/);
    assert.ok(await kubeGet(env, '/api/v1/namespaces/podinfo/services/web-podinfo'), 'the chart\'s Service exists');

    const upgraded = await runJob(t, CID, 'helm', { release: 'web', namespace: 'podinfo', chart, values: { replicaCount: 3, ui: { message: 'upgraded by tether' } } });
    assert.equal(upgraded.outputs?.revision, 2);
    const d2 = await deployment();
    assert.equal(d2?.spec.replicas, 3);
    assert.equal(d2!.spec.template.spec.containers[0]!.env?.find((e) => e.name === 'PODINFO_UI_MESSAGE')?.value, 'upgraded by tether');

    await runJob(t, CID, 'helm', { action: 'delete', release: 'web', namespace: 'podinfo', chart });
    assert.equal(await deployment(), undefined, 'the Deployment is gone');
    assert.equal(await kubeGet(env, '/api/v1/namespaces/podinfo/services/web-podinfo'), undefined, 'the Service is gone');
    const releases = await kubeGet<{ items: unknown[] }>(env, '/api/v1/namespaces/podinfo/secrets?labelSelector=owner%3Dhelm');
    assert.deepEqual(releases?.items, [], 'no helm release Secret is left');
  });

  it('applies cert-manager\'s CRD set (about 1 MB) through a git source, then custom resources of it', async () => {
    const bytes = crdFiles('cert-manager-crds').reduce((n, f) => n + statSync(join(FIXTURES, 'cert-manager-crds', 'crds', f)).size, 0);
    assert.ok(bytes > 1_000_000, `the fixture is the full set (${bytes} bytes)`);
    const names = crdNames('cert-manager-crds');
    assert.equal(names.length, 6);

    const v = await runJob(t, CID, 'manifest', { source: { git: { url: repo.url, ref: 'main', path: 'cert-manager/crds' } } }, 180_000);
    const applied = (v.outputs?.applied as { kind: string; name: string }[]).map((o) => `${o.kind}/${o.name}`).sort();
    assert.deepEqual(applied, names.map((n) => `CustomResourceDefinition/${n}`).sort());
    for (const n of names) assert.ok(await established(env, n), `${n} is established`);

    await createNamespace(env, 'certs');
    await runJob(t, CID, 'manifest', {
      namespace: 'certs',
      manifests: [
        'apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: selfsigned}\nspec: {selfSigned: {}}',
        'apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: web}\nspec:\n  secretName: web-tls\n  dnsNames: [web.example.com]\n  issuerRef: {name: selfsigned, kind: ClusterIssuer}',
      ].join('\n---\n'),
    });
    const cert = await kubeGet<{ spec: { secretName: string } }>(env, '/apis/cert-manager.io/v1/namespaces/certs/certificates/web');
    assert.equal(cert?.spec.secretName, 'web-tls');

    // The CRD's schema is enforced: a Certificate without its required secretName is refused.
    const bad = await submit(t, CID, 'manifest', { namespace: 'certs', manifests: 'apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: broken}\nspec:\n  issuerRef: {name: selfsigned}\n' });
    const failed = await waitForJob(t, bad, 60_000);
    assert.equal(failed.state, 'failed', await jobLogs(t, bad));
    assert.match(failed.error!.message, /secretName/);
  });

  it('deletes cert-manager\'s CRD set through the same git source', async () => {
    await runJob(t, CID, 'manifest', { action: 'delete', source: { git: { url: repo.url, ref: 'main', path: 'cert-manager/crds' } } }, 120_000);
    for (const n of crdNames('cert-manager-crds')) {
      await eventually(async () => (await kubeGet(env, `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${n}`)) === undefined, 60_000, `CRD ${n} to be deleted`);
    }
  });

  it('applies prometheus-operator\'s CRDs and custom resources of them in one inline manifest', async () => {
    const crds = crdFiles('prometheus-operator-crds').map((f) => readFileSync(join(FIXTURES, 'prometheus-operator-crds', 'crds', f), 'utf8'));
    const manifests = [
      ...crds,
      'apiVersion: v1\nkind: Namespace\nmetadata: {name: monitoring}',
      'apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: web, namespace: monitoring}\nspec:\n  selector: {matchLabels: {app: web}}\n  endpoints: [{port: http, interval: 30s}]',
      'apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: web, namespace: monitoring}\nspec:\n  groups:\n  - name: web\n    rules:\n    - alert: WebDown\n      expr: up{job="web"} == 0\n      for: 5m',
      'apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: web, namespace: monitoring}\nspec:\n  selector: {matchLabels: {app: web}}\n  podMetricsEndpoints: [{port: http}]',
    ].join('\n---\n');
    const v = await runJob(t, CID, 'manifest', { manifests }, 120_000);
    const kinds = (v.outputs?.applied as { kind: string }[]).map((o) => o.kind);
    assert.deepEqual(kinds.filter((k) => k === 'CustomResourceDefinition').length, 4);
    for (const n of crdNames('prometheus-operator-crds')) assert.ok(await established(env, n), `${n} is established`);
    const sm = await kubeGet<{ spec: { endpoints: { port: string }[] } }>(env, '/apis/monitoring.coreos.com/v1/namespaces/monitoring/servicemonitors/web');
    assert.equal(sm?.spec.endpoints[0]?.port, 'http');
    const rule = await kubeGet<{ spec: { groups: { rules: { alert: string }[] }[] } }>(env, '/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheusrules/web');
    assert.equal(rule?.spec.groups[0]?.rules[0]?.alert, 'WebDown');
    assert.ok(await kubeGet(env, '/apis/monitoring.coreos.com/v1/namespaces/monitoring/podmonitors/web'));
  });
});
