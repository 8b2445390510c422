/**
 * The cluster-agent Helm chart: lints, renders, and what it renders is accepted by a real
 * kube-apiserver. Then the agent runs with the chart's service account (a token from the
 * TokenRequest API) and only the chart's namespaced Role: it can bootstrap and store its
 * identity, and is refused anything the (here emptied) ClusterRole would grant.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connectKube } from '../../cluster-agent/kube/kube.ts';
import { orderForApply, parseManifests } from '../../cluster-agent/manifest/manifest.plan.ts';
import { kubeRequest, startEnvtest, type Envtest } from '../support/envtest.ts';
import { REPO_ROOT, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { toolPath } from '../support/toolchain.ts';
import { createNamespace, kubeGet, secretData, spawnAgent, submit, waitForJob, type AgentProcess } from './support.ts';

const execFileP = promisify(execFile);
const CHART = join(REPO_ROOT, 'charts', 'cluster-agent');
const NS = 'tether-system';

async function helm(args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await execFileP(toolPath('helm'), args, { env: { ...process.env, HELM_CACHE_HOME: '/tmp/tether-helm-test-cache' } });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe('cluster-agent chart', function () {
  this.timeout(120_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let valuesFile: string;
  let agent: AgentProcess | undefined;

  before(async () => {
    dir = tempDir('tether-chart-');
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp') })]);
    await t.createCluster('chart');
    valuesFile = join(dir, 'values.yaml');
    const token = await t.bootstrapToken('chart', 'cluster-agent');
    // Only the namespaced Role: the agent may manage its identity Secret and nothing else.
    writeFileSync(valuesFile, JSON.stringify({ controlPlane: { url: t.url, caCert: t.caPem }, bootstrapToken: token, rbac: { clusterRules: [] } }));
  });

  after(async () => {
    await agent?.stop('SIGKILL');
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  it('passes helm lint --strict with real values', async () => {
    const r = await helm(['lint', '--strict', CHART, '-f', valuesFile]);
    assert.equal(r.code, 0, r.out);
  });

  it('refuses to render without a control plane URL or with a plain-http one', async () => {
    const none = await helm(['template', 't', CHART, '--set', 'controlPlane.caCert=x']);
    assert.notEqual(none.code, 0);
    assert.match(none.out, /controlPlane.url is required/);
    const http = await helm(['template', 't', CHART, '--set', 'controlPlane.caCert=x', '--set', 'controlPlane.url=http://cp']);
    assert.match(http.out, /must start with https/);
  });

  it('renders objects the real API server accepts, and the agent runs with the chart service account', async () => {
    const r = await helm(['template', 'tether', CHART, '--namespace', NS, '-f', valuesFile]);
    assert.equal(r.code, 0, r.out);
    const objects = orderForApply(parseManifests(r.out));
    assert.deepEqual(objects.map((o) => o.kind).sort(), ['ConfigMap', 'Deployment', 'Role', 'RoleBinding', 'Secret', 'ServiceAccount']);

    await createNamespace(env, NS);
    const kube = connectKube({ kubeconfig: env.kubeconfigPath, workDir: dir });
    for (const o of objects) await kube.objects.apply(o, { fieldManager: 'chart-test' });

    const d = await kubeGet<{ spec: { replicas: number; template: { spec: { containers: { resources: unknown; securityContext: { readOnlyRootFilesystem: boolean; runAsNonRoot: boolean }; env: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[] }[] } } } }>(
      env,
      `/apis/apps/v1/namespaces/${NS}/deployments/tether-cluster-agent`,
    );
    assert.ok(d, 'the Deployment was created');
    assert.equal(d.spec.replicas, 1);
    const c = d.spec.template.spec.containers[0]!;
    assert.deepEqual(c.resources, { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '200m', memory: '256Mi' } });
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext.runAsNonRoot, true);
    assert.equal(c.env.find((e) => e.name === 'TETHER_AGENT_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace');

    // Run the agent as the chart's service account, with what the pod would get.
    const tr = await kubeRequest<{ status: { token: string } }>(env, 'POST', `/api/v1/namespaces/${NS}/serviceaccounts/tether-cluster-agent/token`, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: 3600 },
    });
    assert.equal(tr.status, 201, tr.text);
    const kubeconfig = join(dir, 'sa.kubeconfig');
    writeFileSync(kubeconfig, JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'e', cluster: { server: env.url, 'certificate-authority-data': Buffer.from(env.caPem).toString('base64') } }],
      users: [{ name: 'sa', user: { token: tr.body.status.token } }],
      contexts: [{ name: 'e', context: { cluster: 'e', user: 'sa' } }],
      'current-context': 'e',
    }), { mode: 0o600 });
    const token = (await secretData(env, NS, 'tether-cluster-agent-bootstrap'))?.token;
    assert.ok(token);
    agent = spawnAgent({ t, env: { ...env, kubeconfigPath: kubeconfig }, namespace: NS, workDir: join(dir, 'work'), token });
    await agent.waitForLog(/cluster agent running/);
    assert.ok((await secretData(env, NS, 'tether-agent-identity'))?.['tls.crt'], 'the identity Secret was stored under the chart Role');

    // Without cluster rules the service account may not apply anything.
    const id = await submit(t, 'chart', 'manifest', { manifests: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nope}\n', namespace: 'default' });
    const v = await waitForJob(t, id);
    assert.equal(v.state, 'failed');
    assert.match(v.error!.message, /forbidden/i);
  });
});
