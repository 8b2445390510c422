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

  it('air-gapped values: a CLI config in a ConfigMap, a read-only provider mirror and a plugin cache, accepted by the API server', async () => {
    const airgap = join(dir, 'airgap.yaml');
    writeFileSync(airgap, JSON.stringify({
      controlPlane: { url: t.url, caCert: t.caPem },
      bootstrapTokenSecret: 'tether-token',
      tofu: {
        providerMirror: { volume: { persistentVolumeClaim: { claimName: 'tofu-providers', readOnly: true } }, mountPath: '/opt/mirror' },
        networkMirror: { url: 'https://mirror.example.com/tofu/providers/' },
        pluginCache: { volume: { persistentVolumeClaim: { claimName: 'tofu-plugin-cache' } } },
      },
    }));
    const lint = await helm(['lint', '--strict', CHART, '-f', airgap]);
    assert.equal(lint.code, 0, lint.out);
    const r = await helm(['template', 'airgap', CHART, '--namespace', 'airgap', '-f', airgap]);
    assert.equal(r.code, 0, r.out);
    const objects = orderForApply(parseManifests(r.out));
    const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'airgap-cluster-agent-tofu') as { data: { tofurc: string } } | undefined;
    assert.ok(cm, 'the tofu CLI config ConfigMap is rendered');
    assert.match(cm.data.tofurc, /provider_installation \{\s+filesystem_mirror \{\s+path = "\/opt\/mirror"\s+\}\s+network_mirror \{\s+url = "https:\/\/mirror\.example\.com\/tofu\/providers\/"\s+\}\s+\}/);

    await createNamespace(env, 'airgap');
    const kube = connectKube({ kubeconfig: env.kubeconfigPath, workDir: dir });
    for (const o of objects) await kube.objects.apply(o, { fieldManager: 'chart-test' });
    type Pod = {
      containers: { args: string[]; volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[] }[];
      volumes: { name: string; configMap?: { name: string }; persistentVolumeClaim?: { claimName: string; readOnly?: boolean }; emptyDir?: unknown }[];
    };
    const d = await kubeGet<{ spec: { template: { spec: Pod } } }>(env, '/apis/apps/v1/namespaces/airgap/deployments/airgap-cluster-agent');
    assert.ok(d, 'the API server stored the Deployment');
    const pod = d.spec.template.spec;
    const c = pod.containers[0]!;
    assert.deepEqual(c.args, ['--tofu-cli-config-file=/etc/tether/tofu/tofurc', '--tofu-plugin-cache-dir=/var/cache/tofu-plugins']);
    const mount = (name: string) => c.volumeMounts.find((m) => m.name === name);
    assert.deepEqual(mount('tofu-config'), { name: 'tofu-config', mountPath: '/etc/tether/tofu', readOnly: true });
    assert.deepEqual(mount('tofu-providers'), { name: 'tofu-providers', mountPath: '/opt/mirror', readOnly: true });
    assert.equal(mount('tofu-plugin-cache')?.mountPath, '/var/cache/tofu-plugins');
    assert.notEqual(mount('tofu-plugin-cache')?.readOnly, true, 'the cache is writable');
    const volume = (name: string) => pod.volumes.find((v) => v.name === name);
    assert.equal(volume('tofu-config')?.configMap?.name, 'airgap-cluster-agent-tofu');
    assert.deepEqual(volume('tofu-providers')?.persistentVolumeClaim, { claimName: 'tofu-providers', readOnly: true });
    assert.equal(volume('tofu-plugin-cache')?.persistentVolumeClaim?.claimName, 'tofu-plugin-cache');
  });

  it('air-gapped values: a CLI config given inline is used as it is; without a mirror the plugin cache is an emptyDir', async () => {
    const cliConfig = 'provider_installation {\n  network_mirror {\n    url = "https://nexus.example.com/repository/tofu/"\n  }\n}\n';
    const r = await helm(['template', 't', CHART, '--set', 'controlPlane.url=https://cp', '--set', 'controlPlane.caCert=x', '--set-string', `tofu.cliConfig=${cliConfig}`]);
    assert.equal(r.code, 0, r.out);
    const objects = parseManifests(r.out);
    const cm = objects.find((o) => o.metadata.name === 't-cluster-agent-tofu') as { data: { tofurc: string } } | undefined;
    assert.equal(cm?.data.tofurc, cliConfig);
    const pod = (objects.find((o) => o.kind === 'Deployment') as unknown as { spec: { template: { spec: { volumes: { name: string; emptyDir?: { sizeLimit: string } }[] } } } }).spec.template.spec;
    assert.deepEqual(pod.volumes.find((v) => v.name === 'tofu-plugin-cache')?.emptyDir, { sizeLimit: '1Gi' });
    assert.equal(pod.volumes.find((v) => v.name === 'tofu-providers'), undefined);

    const plain = await helm(['template', 't', CHART, '--set', 'controlPlane.url=https://cp', '--set', 'controlPlane.caCert=x']);
    assert.doesNotMatch(plain.out, /tofu-cli-config-file|-tofu\n/, 'no CLI config unless one is asked for');
    assert.match(plain.out, /--tofu-plugin-cache-dir=\/var\/cache\/tofu-plugins/);
  });

  it('air-gapped values: refuses a network mirror that is not an https URL ending in /', async () => {
    for (const url of ['http://mirror.example.com/providers/', 'https://mirror.example.com/providers']) {
      const r = await helm(['template', 't', CHART, '--set', 'controlPlane.url=https://cp', '--set', 'controlPlane.caCert=x', '--set', `tofu.networkMirror.url=${url}`]);
      assert.notEqual(r.code, 0, url);
      assert.match(r.out, /tofu\.networkMirror\.url must be an https:\/\/ URL ending in \//);
    }
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
