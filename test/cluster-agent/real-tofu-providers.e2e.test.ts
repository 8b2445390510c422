/**
 * The cluster agent running OpenTofu modules with real providers, hashicorp/kubernetes and
 * hashicorp/random, built from the Go module proxy into a filesystem mirror
 * (test/toolchain/providers.sh). The agent gets the flags the cluster-agent chart renders for an
 * air-gapped cluster (a CLI config naming the mirror only, and a plugin cache), so tofu never
 * contacts a registry: a module with `provider "kubernetes" {}` (no configuration: it gets the
 * agent's cluster) creates a ConfigMap in the envtest cluster, re-applies with no changes and
 * destroys it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseManifests } from '../../cluster-agent/manifest/manifest.plan.ts';
import { startEnvtest, type Envtest } from '../support/envtest.ts';
import { REPO_ROOT, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { toolPath, tofuProviderMirror, tofuProviderVersion } from '../support/toolchain.ts';
import { bareRepo, createNamespace, jobLogs, kubeGet, runJob, secretData, spawnAgent, type AgentProcess, type BareRepo } from './support.ts';

const execFileP = promisify(execFile);
const CID = 'tofureal';
const NS = 'tether-system';
const CONFIG_IN_POD = '/etc/tether/tofu/tofurc';

// The kubernetes provider as modules are written for in-cluster infrastructure: no configuration,
// no variable saying where the cluster is. The agent gives tofu its own cluster (here, outside a
// Pod, its kubeconfig as KUBE_CONFIG_PATH).
const KUBERNETES_MODULE = `
terraform {
  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "${tofuProviderVersion('kubernetes')}"
    }
  }
}
variable "greeting" {
  type = string
}
provider "kubernetes" {}
resource "kubernetes_config_map" "app" {
  metadata {
    name      = "tofu-made"
    namespace = "tofu-apps"
    labels    = { "app.kubernetes.io/managed-by" = "tofu" }
  }
  data = {
    greeting = var.greeting
  }
}
output "uid" {
  value = kubernetes_config_map.app.metadata[0].uid
}
`;

// registry.terraform.io spelled out: the mirror serves both hosts.
const RANDOM_MODULE = `
terraform {
  required_providers {
    random = {
      source  = "registry.terraform.io/hashicorp/random"
      version = "~> ${tofuProviderVersion('random').split('.')[0]}.0"
    }
  }
}
resource "random_pet" "name" {
  length = 3
}
resource "random_password" "db" {
  length  = 24
  special = false
}
resource "random_integer" "port" {
  min = 30000
  max = 32767
}
output "name" {
  value = random_pet.name.id
}
output "port" {
  value = random_integer.port.result
}
output "password" {
  value     = random_password.db.result
  sensitive = true
}
`;

/**
 * The agent's flags as the chart renders them for a filesystem mirror, with the pod's paths
 * replaced by local ones: the chart's CLI config (written to a file) and plugin cache.
 */
async function chartTofuFlags(dir: string, mirror: string, pluginCache: string): Promise<{ args: string[]; cliConfig: string }> {
  const { stdout } = await execFileP(toolPath('helm'), [
    'template', 'tether', join(REPO_ROOT, 'charts', 'cluster-agent'), '--namespace', NS,
    '--set', 'controlPlane.url=https://cp.example.com:8443', '--set', 'controlPlane.caCert=unused',
    '--set-json', `tofu.providerMirror.volume=${JSON.stringify({ persistentVolumeClaim: { claimName: 'tofu-providers', readOnly: true } })}`,
    '--set', `tofu.providerMirror.mountPath=${mirror}`,
    '--set', `tofu.pluginCache.mountPath=${pluginCache}`,
  ]);
  const objects = parseManifests(stdout);
  const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'tether-cluster-agent-tofu') as { data?: { tofurc?: string } } | undefined;
  const cliConfig = cm?.data?.tofurc ?? assert.fail('the chart rendered no tofu CLI config');
  const file = join(dir, 'chart-tofurc');
  writeFileSync(file, cliConfig);
  const deployment = objects.find((o) => o.kind === 'Deployment') as { spec: { template: { spec: { containers: { args?: string[] }[] } } } } | undefined;
  const args = deployment?.spec.template.spec.containers[0]?.args ?? assert.fail('the chart rendered no agent args');
  assert.deepEqual(args, [`--tofu-cli-config-file=${CONFIG_IN_POD}`, `--tofu-plugin-cache-dir=${pluginCache}`]);
  return { args: args.map((a) => a.replace(CONFIG_IN_POD, file)), cliConfig };
}

describe('cluster agent with real tofu providers from a filesystem mirror (end to end)', function () {
  this.timeout(300_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let agent: AgentProcess | undefined;
  let repo: BareRepo;
  let pluginCache: string;

  before(async function () {
    const mirror = tofuProviderMirror();
    dir = tempDir('tether-tofu-real-');
    pluginCache = join(dir, 'plugin-cache');
    mkdirSync(pluginCache);
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp') })]);
    await t.createCluster(CID);
    await createNamespace(env, NS);
    await createNamespace(env, 'tofu-apps');
    repo = bareRepo(dir, 'modules');
    repo.commit({ 'kubernetes/main.tf': KUBERNETES_MODULE, 'random/main.tf': RANDOM_MODULE });
    const { args, cliConfig } = await chartTofuFlags(dir, mirror, pluginCache);
    assert.match(cliConfig, /filesystem_mirror/);
    assert.doesNotMatch(cliConfig, /direct/, 'no fallback to a registry');
    agent = spawnAgent({ t, env, namespace: NS, workDir: join(dir, 'work'), token: await t.bootstrapToken(CID, 'cluster-agent'), args });
    await agent.waitForLog(/cluster agent running/);
  });

  after(async function () {
    await agent?.stop('SIGKILL');
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  const kubernetesSpec = (greeting: string, action?: 'delete') => ({
    ...(action ? { action } : {}),
    source: { git: { url: repo.url, ref: 'main', path: 'kubernetes' } },
    stateName: 'configmap',
    vars: { greeting },
  });
  const configMap = () => kubeGet<{ metadata: { uid: string; labels?: Record<string, string> }; data?: Record<string, string> }>(env, '/api/v1/namespaces/tofu-apps/configmaps/tofu-made');

  it('creates a ConfigMap in the agent\'s cluster through the kubernetes provider, unconfigured, installed from the mirror', async () => {
    const v = await runJob(t, CID, 'tofu', kubernetesSpec('hello'), 240_000);
    const logs = await jobLogs(t, v.id);
    assert.match(logs, new RegExp(`Installed hashicorp/kubernetes v${tofuProviderVersion('kubernetes').replace(/\./g, '\\.')}`));
    assert.match(logs, /Apply complete! Resources: 1 added, 0 changed, 0 destroyed/);
    const cm = await configMap();
    assert.deepEqual(cm?.data, { greeting: 'hello' });
    assert.equal(cm?.metadata.labels?.['app.kubernetes.io/managed-by'], 'tofu');
    assert.deepEqual(v.outputs?.outputs, { uid: cm?.metadata.uid });
    const cached = join(pluginCache, 'registry.opentofu.org', 'hashicorp', 'kubernetes', tofuProviderVersion('kubernetes'), 'linux_amd64');
    assert.ok(existsSync(cached), `the provider went through the plugin cache (${cached})`);
  });

  it('re-applies the same module with no changes', async () => {
    const before = await configMap();
    const v = await runJob(t, CID, 'tofu', kubernetesSpec('hello'), 240_000);
    const logs = await jobLogs(t, v.id);
    assert.match(logs, /No changes\./);
    assert.match(logs, /Apply complete! Resources: 0 added, 0 changed, 0 destroyed/);
    assert.equal((await configMap())?.metadata.uid, before?.metadata.uid, 'the same object');
  });

  it('changes the ConfigMap in place, then destroys it', async () => {
    const changed = await runJob(t, CID, 'tofu', kubernetesSpec('bonjour'), 240_000);
    assert.match(await jobLogs(t, changed.id), /Resources: 0 added, 1 changed, 0 destroyed/);
    assert.deepEqual((await configMap())?.data, { greeting: 'bonjour' });

    const destroyed = await runJob(t, CID, 'tofu', kubernetesSpec('bonjour', 'delete'), 240_000);
    assert.match(await jobLogs(t, destroyed.id), /Destroy complete! Resources: 1 destroyed/);
    assert.equal(await configMap(), undefined, 'the ConfigMap is gone');
    assert.equal(await secretData(env, NS, 'configmap-outputs'), undefined, 'the outputs Secret is gone');
  });

  it('runs a module using the random provider: outputs, a sensitive one kept in the cluster, stable on re-apply, destroyed', async () => {
    const spec = { source: { git: { url: repo.url, ref: 'main', path: 'random' } }, stateName: 'random' };
    const first = await runJob(t, CID, 'tofu', spec, 240_000);
    const logs = await jobLogs(t, first.id);
    assert.match(logs, new RegExp(`Installed registry\\.terraform\\.io/hashicorp/random v${tofuProviderVersion('random').replace(/\./g, '\\.')}`));
    const outputs = first.outputs?.outputs as { name: string; port: number };
    assert.match(outputs.name, /^[a-z]+-[a-z]+-[a-z]+$/);
    assert.ok(Number.isInteger(outputs.port) && outputs.port >= 30000 && outputs.port <= 32767, `port ${outputs.port}`);
    assert.deepEqual(first.outputs?.sensitiveOutputs, ['password']);
    const password = (await secretData(env, NS, 'random-outputs'))?.password ?? assert.fail('no password in the outputs Secret');
    assert.match(password, /^[A-Za-z0-9]{24}$/);
    assert.ok(!JSON.stringify(first).includes(password) && !logs.includes(password), 'the generated password never reaches the control plane');

    const again = await runJob(t, CID, 'tofu', spec, 240_000);
    assert.match(await jobLogs(t, again.id), /No changes\./);
    assert.deepEqual(again.outputs?.outputs, outputs, 'the same values');

    const destroyed = await runJob(t, CID, 'tofu', { ...spec, action: 'delete' }, 240_000);
    assert.match(await jobLogs(t, destroyed.id), /Destroy complete! Resources: 3 destroyed/);
  });
});
