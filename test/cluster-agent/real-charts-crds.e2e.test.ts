/**
 * The cluster agent with artefacts nobody here wrote, vendored unchanged under test/fixtures/:
 * podinfo's Helm chart installed, upgraded and uninstalled through `helm` commands;
 * cert-manager's CRD set (about 1 MB, files of 332 KB) applied through a manifest with a git
 * source, then custom resources of it, and the same set inline, padded to exactly the inline limit
 * (one byte more is refused at submission); four of prometheus-operator's CRDs with custom
 * resources in one inline manifest, then its whole CRD set (4.5 MB, files up to 833 KB) through
 * git with custom resources of it. All against a real kube-apiserver. No test re-creates a CRD
 * another deleted: the API server may keep a deleted CRD terminating for a while.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_MANIFEST_BYTES } from '../../common/specs.ts';
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
const crdText = (fixture: string, f: string) => readFileSync(join(FIXTURES, fixture, 'crds', f), 'utf8');
/** The CRD names of a fixture (or of some of its files): metadata.name of each file's CustomResourceDefinition. */
const crdNames = (fixture: string, files = crdFiles(fixture)) =>
  files.map((f) => /^ {2}name: (\S+)$/m.exec(crdText(fixture, f))?.[1] ?? assert.fail(`no name in ${f}`));
/** The bytes of a fixture's CRD files together, as git holds them. */
const crdBytes = (fixture: string) => crdFiles(fixture).reduce((n, f) => n + statSync(join(FIXTURES, fixture, 'crds', f)).size, 0);
/** The four small prometheus-operator CRDs (235 KB together) that go inline with custom resources of them. */
const PROMETHEUS_INLINE = ['podmonitors', 'probes', 'prometheusrules', 'servicemonitors'].map((n) => `monitoring.coreos.com_${n}.yaml`);

async function established(env: Envtest, name: string): Promise<boolean> {
  const crd = await kubeGet<{ status?: { conditions?: { type: string; status: string }[] } }>(env, `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
  return crd?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false;
}

/**
 * Waits until the API server serves lists of a CRD's resources. Right after a CRD is created or
 * updated its storage is (re)initialised; a delete in that window has the API server's finalizer
 * fail its list ("storage is (re)initializing") and retry on a growing backoff, which under load
 * outlasts any reasonable wait. A client deleting CRDs it just applied waits the same way.
 */
async function crdServed(env: Envtest, name: string, timeoutMs = 120_000): Promise<void> {
  const crd = await kubeGet<{ spec: { group: string; names: { plural: string }; versions: { name: string; storage: boolean }[] } }>(env, `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
  assert.ok(crd, `CRD ${name} exists`);
  const version = crd.spec.versions.find((v) => v.storage)?.name ?? crd.spec.versions[0]!.name;
  const list = `/apis/${crd.spec.group}/${version}/${crd.spec.names.plural}`;
  await eventually(async () => (await kubeGet(env, list)) !== undefined, timeoutMs, `the API server to list ${list}`);
}

/** Waits until a CRD is gone (its custom resources deleted by the API server), with its conditions when it is not. */
async function crdDeleted(env: Envtest, name: string, timeoutMs = 120_000): Promise<void> {
  const path = `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`;
  await eventually(async () => (await kubeGet(env, path)) === undefined, timeoutMs, `CRD ${name} to be deleted`).catch(async (err: Error) => {
    const crd = await kubeGet<{ metadata: { finalizers?: string[] }; status?: { conditions?: unknown[] } }>(env, path);
    throw new Error(`${err.message}: finalizers ${JSON.stringify(crd?.metadata.finalizers)}, conditions ${JSON.stringify(crd?.status?.conditions)}`);
  });
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
    repo.commit({
      ...fixtureFiles('podinfo', 'chart', 'charts/podinfo'),
      ...fixtureFiles('cert-manager-crds', 'crds', 'cert-manager/crds'),
      ...fixtureFiles('prometheus-operator-crds', 'crds', 'prometheus-operator/crds'),
    });
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

  it('applies cert-manager\'s CRD set inline, padded to exactly the inline limit, and refuses one byte more', async () => {
    const set = crdFiles('cert-manager-crds').map((f) => crdText('cert-manager-crds', f)).join('\n---\n');
    const setBytes = Buffer.byteLength(set, 'utf8');
    assert.ok(setBytes > 1_000_000, `the whole set is over 1 MB (${setBytes} bytes)`);
    assert.ok(setBytes <= MAX_MANIFEST_BYTES, `the whole set fits the inline limit (${setBytes} of ${MAX_MANIFEST_BYTES} bytes)`);
    // A trailing YAML comment fills the last document up to `bytes` UTF-8 bytes.
    const padded = (bytes: number) => `${set}\n# ${'x'.repeat(bytes - setBytes - 4)}\n`;
    const atLimit = padded(MAX_MANIFEST_BYTES);
    assert.equal(Buffer.byteLength(atLimit, 'utf8'), MAX_MANIFEST_BYTES);
    assert.ok(atLimit.length < MAX_MANIFEST_BYTES, 'cert-manager\'s CRDs hold multi-byte characters: the limit counts bytes');
    const names = crdNames('cert-manager-crds');

    const v = await runJob(t, CID, 'manifest', { manifests: atLimit }, 180_000);
    const applied = (v.outputs?.applied as { kind: string; name: string }[]).map((o) => `${o.kind}/${o.name}`).sort();
    assert.deepEqual(applied, names.map((n) => `CustomResourceDefinition/${n}`).sort());
    for (const n of names) assert.ok(await established(env, n), `${n} is established`);

    const over = padded(MAX_MANIFEST_BYTES + 1);
    assert.equal(Buffer.byteLength(over, 'utf8'), MAX_MANIFEST_BYTES + 1);
    const r = await t.admin.request<{ error: { code: string; message: string } }>(
      'POST', '/v1/commands', { target: { cluster: CID }, type: 'manifest', spec: { manifests: over }, maxAttempts: 1 }, { accept: [400] },
    );
    assert.equal(r.status, 400, `refused, not ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
    assert.equal(r.body.error.code, 'invalid_spec');
    assert.match(r.body.error.message, new RegExp(`manifests: inline manifests are limited to 1 MiB \\(${MAX_MANIFEST_BYTES} bytes, these are ${MAX_MANIFEST_BYTES + 1}\\)`));
    assert.match(r.body.error.message, /source: \{git: \{url, ref, path\}\}/, 'the error points to the git source');
  });

  it('applies cert-manager\'s CRD set (about 1 MB) through a git source, then custom resources of it', async () => {
    const bytes = crdBytes('cert-manager-crds');
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

  it('deletes cert-manager\'s CRD set through the same git source', async function () {
    this.timeout(600_000);
    for (const n of crdNames('cert-manager-crds')) await crdServed(env, n);
    await runJob(t, CID, 'manifest', { action: 'delete', source: { git: { url: repo.url, ref: 'main', path: 'cert-manager/crds' } } }, 120_000);
    for (const n of crdNames('cert-manager-crds')) await crdDeleted(env, n, 300_000);
  });

  it('applies four of prometheus-operator\'s CRDs and custom resources of them in one inline manifest', async () => {
    const crds = PROMETHEUS_INLINE.map((f) => crdText('prometheus-operator-crds', f));
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
    for (const n of crdNames('prometheus-operator-crds', PROMETHEUS_INLINE)) assert.ok(await established(env, n), `${n} is established`);
    const sm = await kubeGet<{ spec: { endpoints: { port: string }[] } }>(env, '/apis/monitoring.coreos.com/v1/namespaces/monitoring/servicemonitors/web');
    assert.equal(sm?.spec.endpoints[0]?.port, 'http');
    const rule = await kubeGet<{ spec: { groups: { rules: { alert: string }[] }[] } }>(env, '/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheusrules/web');
    assert.equal(rule?.spec.groups[0]?.rules[0]?.alert, 'WebDown');
    assert.ok(await kubeGet(env, '/apis/monitoring.coreos.com/v1/namespaces/monitoring/podmonitors/web'));
  });

  it('applies prometheus-operator\'s whole CRD set (4.5 MB, over the inline limit) through a git source, then custom resources of it', async () => {
    const bytes = crdBytes('prometheus-operator-crds');
    assert.ok(bytes > MAX_MANIFEST_BYTES, `the set is over the inline limit (${bytes} bytes, the limit is ${MAX_MANIFEST_BYTES})`);
    const names = crdNames('prometheus-operator-crds');
    assert.equal(names.length, 10, 'the whole set');

    const v = await runJob(t, CID, 'manifest', { source: { git: { url: repo.url, ref: 'main', path: 'prometheus-operator/crds' } } }, 240_000);
    const applied = (v.outputs?.applied as { kind: string; name: string }[]).map((o) => `${o.kind}/${o.name}`).sort();
    assert.deepEqual(applied, names.map((n) => `CustomResourceDefinition/${n}`).sort());
    for (const n of names) assert.ok(await established(env, n), `${n} is established`);

    // A custom resource of each of the six large CRDs (600-830 KB each).
    await createNamespace(env, 'prom');
    const resources: [string, string, string, string][] = [
      ['v1', 'Prometheus', 'prometheuses', 'spec: {replicas: 1, serviceMonitorSelector: {}}'],
      ['v1', 'Alertmanager', 'alertmanagers', 'spec: {replicas: 1}'],
      ['v1', 'ThanosRuler', 'thanosrulers', 'spec: {queryEndpoints: ["dnssrv+_http._tcp.thanos-query.prom.svc"]}'],
      ['v1alpha1', 'PrometheusAgent', 'prometheusagents', 'spec: {replicas: 1}'],
      ['v1alpha1', 'ScrapeConfig', 'scrapeconfigs', 'spec: {staticConfigs: [{targets: ["web.prom.svc:8080"]}]}'],
      ['v1alpha1', 'AlertmanagerConfig', 'alertmanagerconfigs', 'spec:\n  route: {receiver: sink}\n  receivers: [{name: sink}]'],
    ];
    await runJob(t, CID, 'manifest', {
      namespace: 'prom',
      manifests: resources.map(([version, kind, , spec]) => `apiVersion: monitoring.coreos.com/${version}\nkind: ${kind}\nmetadata: {name: web}\n${spec}`).join('\n---\n'),
    });
    for (const [version, kind, plural] of resources) {
      assert.ok(names.includes(`${plural}.monitoring.coreos.com`), `${kind} is one of the set`);
      assert.ok(await kubeGet(env, `/apis/monitoring.coreos.com/${version}/namespaces/prom/${plural}/web`), `the ${kind} is stored`);
    }
    const prom = await kubeGet<{ spec: { replicas: number } }>(env, '/apis/monitoring.coreos.com/v1/namespaces/prom/prometheuses/web');
    assert.equal(prom?.spec.replicas, 1);

    // The large schema is enforced: a Prometheus with a string for replicas is refused.
    const bad = await submit(t, CID, 'manifest', { namespace: 'prom', manifests: 'apiVersion: monitoring.coreos.com/v1\nkind: Prometheus\nmetadata: {name: broken}\nspec: {replicas: three}\n' });
    const failed = await waitForJob(t, bad, 60_000);
    assert.equal(failed.state, 'failed', await jobLogs(t, bad));
    assert.match(failed.error!.message, /replicas/);
  });

  it('deletes prometheus-operator\'s CRD set, and with it the custom resources, through the same git source', async function () {
    // The API server deletes a CRD once its custom resources are gone; its finalizer retries with
    // a growing back-off while the CRD's storage re-initialises, which takes long on a busy machine.
    this.timeout(600_000);
    for (const n of crdNames('prometheus-operator-crds')) await crdServed(env, n);
    await runJob(t, CID, 'manifest', { action: 'delete', source: { git: { url: repo.url, ref: 'main', path: 'prometheus-operator/crds' } } }, 180_000);
    for (const n of crdNames('prometheus-operator-crds')) await crdDeleted(env, n, 300_000);
    assert.equal(await kubeGet(env, '/apis/monitoring.coreos.com/v1/namespaces/prom/prometheuses/web'), undefined, 'the Prometheus is gone');
    assert.equal(await kubeGet(env, '/apis/monitoring.coreos.com/v1/namespaces/monitoring/servicemonitors/web'), undefined, 'the ServiceMonitor applied inline is gone');
  });
});
