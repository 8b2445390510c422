/**
 * The `diff` command's tofu target against a real kube-apiserver with real tofu and the real
 * hashicorp/kubernetes provider (from the test toolchain's filesystem mirror): a module applied
 * with a `tofu` command is in sync; the object it manages edited by hand is drifted, naming the
 * resource address; deleted by hand it is missing. The diff changes nothing: neither the object
 * nor the state Secret, and no value of the plan reaches the control plane.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kubeRequest, startEnvtest, type Envtest } from '../support/envtest.ts';
import { removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { tofuProviderMirror, tofuProviderVersion } from '../support/toolchain.ts';
import { bareRepo, createNamespace, jobLogs, kubeGet, runJob, spawnAgent, type AgentProcess } from './support.ts';

const CID = 'tofudiff';
const NS = 'tether-system';
const APPS = 'tofu-apps';
const HAND = 'edited-by-hand-canary';

const MODULE = `
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
    name      = "tofu-diffed"
    namespace = "${APPS}"
  }
  data = {
    greeting = var.greeting
  }
}
`;

interface TofuDiffOutputs {
  resources: { address: string; status: string; diff?: string; changedOutside?: boolean }[];
  summary: { inSync: number; drifted: number; missing: number; error: number };
}

describe('cluster agent diff of a tofu module (end to end)', function () {
  this.timeout(300_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let agent: AgentProcess | undefined;
  let spec: Record<string, unknown>;
  const diffIds: number[] = [];

  const configMap = () => kubeGet<{ metadata: { resourceVersion: string }; data?: Record<string, string> }>(env, `/api/v1/namespaces/${APPS}/configmaps/tofu-diffed`);
  const stateVersion = async () => (await kubeGet<{ metadata: { resourceVersion: string } }>(env, `/api/v1/namespaces/${NS}/secrets/tfstate-default-diffed`))?.metadata.resourceVersion;
  async function diff(): Promise<TofuDiffOutputs> {
    const v = await runJob(t, CID, 'diff', { target: 'tofu', spec }, 240_000);
    diffIds.push(v.id);
    return v.outputs as unknown as TofuDiffOutputs;
  }

  before(async function () {
    const mirror = tofuProviderMirror();
    dir = tempDir('tether-tofu-diff-');
    mkdirSync(join(dir, 'plugin-cache'));
    const tofurc = join(dir, 'mirror-tofurc');
    writeFileSync(tofurc, `disable_checkpoint = true\nprovider_installation {\n  filesystem_mirror {\n    path = "${mirror}"\n  }\n}\n`);
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp') })]);
    await t.createCluster(CID);
    await createNamespace(env, NS);
    await createNamespace(env, APPS);
    const repo = bareRepo(dir, 'modules');
    repo.commit({ 'app/main.tf': MODULE });
    spec = { source: { git: { url: repo.url, ref: 'main', path: 'app' } }, stateName: 'diffed', vars: { greeting: 'hello' } };
    agent = spawnAgent({
      t,
      env,
      namespace: NS,
      workDir: join(dir, 'work'),
      token: await t.bootstrapToken(CID, 'cluster-agent'),
      args: [`--tofu-cli-config-file=${tofurc}`, `--tofu-plugin-cache-dir=${join(dir, 'plugin-cache')}`],
    });
    await agent.waitForLog(/cluster agent running/);
    await runJob(t, CID, 'tofu', spec, 240_000);
  });

  after(async function () {
    await agent?.stop('SIGKILL');
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  it('reports the module as applied in sync, and writes no state', async () => {
    const state = await stateVersion();
    assert.ok(state, 'the apply stored its state');
    const d = await diff();
    assert.deepEqual(d.resources, [{ address: 'kubernetes_config_map.app', status: 'in-sync' }]);
    assert.deepEqual(d.summary, { inSync: 1, drifted: 0, missing: 0, error: 0 });
    assert.equal(await stateVersion(), state, 'the state Secret is untouched');
  });

  it('reports the object edited by hand as drifted, naming the resource address, and changes nothing', async () => {
    const r = await kubeRequest(env, 'PATCH', `/api/v1/namespaces/${APPS}/configmaps/tofu-diffed?fieldManager=kubectl-edit`, { data: { greeting: HAND } }, { contentType: 'application/merge-patch+json' });
    assert.equal(r.status, 200, r.text);
    const edited = await configMap();
    const state = await stateVersion();
    const d = await diff();
    assert.deepEqual(d.resources, [{ address: 'kubernetes_config_map.app', status: 'drifted', diff: 'update', changedOutside: true }]);
    assert.deepEqual(d.summary, { inSync: 0, drifted: 1, missing: 0, error: 0 });
    const after = await configMap();
    assert.equal(after?.data?.greeting, HAND, 'the hand edit is still there');
    assert.equal(after?.metadata.resourceVersion, edited?.metadata.resourceVersion, 'the object is untouched');
    assert.equal(await stateVersion(), state, 'the refreshed state was not written');
  });

  it('reports the object deleted by hand as missing', async () => {
    const r = await kubeRequest(env, 'DELETE', `/api/v1/namespaces/${APPS}/configmaps/tofu-diffed`);
    assert.equal(r.status, 200, r.text);
    const d = await diff();
    assert.deepEqual(d.resources, [{ address: 'kubernetes_config_map.app', status: 'missing', diff: 'create' }]);
    assert.equal(await configMap(), undefined, 'nothing was created');
  });

  it('never sends a value of the plan to the control plane', async () => {
    assert.equal(diffIds.length, 3, 'every diff ran');
    for (const id of diffIds) {
      const logs = await jobLogs(t, id);
      assert.match(logs, /tofu plan -detailed-exitcode -lock=false/);
      assert.ok(!logs.includes(HAND), `the diff ${id} printed a value of the plan`);
    }
  });
});
