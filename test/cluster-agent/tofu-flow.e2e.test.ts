/**
 * The cluster agent end to end with real tofu and helm: state in a Kubernetes Secret, sensitive
 * outputs only in the cluster (never in the control plane's database files), flows passing
 * outputs between steps, a failing step stopping its flow, and cancellation or timeout killing
 * the whole helm/tofu process tree.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEnvtest, type Envtest } from '../support/envtest.ts';
import { captureLogger, eventually, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import {
  bareRepo,
  NEVER_ENDING_HOOK_JOB,
  createNamespace,
  createSecret,
  job,
  jobLogs,
  kubeGet,
  pgidOf,
  pidsInGroup,
  pidsWithCmdline,
  runJob,
  secretData,
  spawnAgent,
  submit,
  waitForJob,
  type AgentProcess,
  type BareRepo,
} from './support.ts';

const CID = 'bravo';
const NS = 'tether-system';
const PASSWORD = 'S3nsitive-Value-98765';

const MODULE = `
variable "name" {
  type = string
}
variable "password" {
  type      = string
  sensitive = true
}
resource "terraform_data" "thing" {
  input = "hello-\${var.name}"
}
output "greeting" {
  value = terraform_data.thing.output
}
output "token" {
  value     = "tok-\${var.password}"
  sensitive = true
}
`;

const SLOW_MODULE = `
resource "terraform_data" "slow" {
  provisioner "local-exec" {
    command = "sleep 3007"
  }
}
`;

const BROKEN_MODULE = `
resource "terraform_data" "broken" {
  provisioner "local-exec" {
    command = "echo the provisioner fails on purpose >&2; exit 3"
  }
}
`;

const CHART = {
  'chart/Chart.yaml': 'apiVersion: v2\nname: app\nversion: 0.2.0\n',
  'chart/templates/configmap.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata:\n  greeting: {{ .Values.greeting | quote }}\n  token: {{ .Values.token | quote }}\n',
  // A post-install hook Job never completes without a kubelet: helm waits for it.
  'hook-chart/Chart.yaml': 'apiVersion: v2\nname: hooked\nversion: 0.1.0\n',
  'hook-chart/templates/job.yaml': [...NEVER_ENDING_HOOK_JOB, ''].join('\n'),
};

/** Every byte of the control plane's SQLite files. */
function databaseBytes(dataDir: string): Buffer {
  return Buffer.concat(['tether.db', 'tether.db-wal', 'tether.db-shm'].map((f) => join(dataDir, f)).filter(existsSync).map((f) => readFileSync(f)));
}

describe('cluster agent with tofu and flows (end to end)', function () {
  this.timeout(180_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let agent: AgentProcess | undefined;
  let repo: BareRepo;
  const cpLog = captureLogger();

  before(async function () {
    dir = tempDir('tether-ca-tofu-');
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp') }, { log: cpLog.log })]);
    await t.createCluster(CID);
    await createNamespace(env, NS);
    await createSecret(env, NS, 'app-credentials', { password: PASSWORD });
    repo = bareRepo(dir, 'infra');
    repo.commit({ 'modules/basic/main.tf': MODULE, 'modules/slow/main.tf': SLOW_MODULE, 'modules/broken/main.tf': BROKEN_MODULE, ...CHART });
    agent = spawnAgent({ t, env, namespace: NS, workDir: join(dir, 'work'), token: await t.bootstrapToken(CID, 'cluster-agent') });
    await agent.waitForLog(/cluster agent running/);
  });

  after(async function () {
    await agent?.stop('SIGKILL');
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  const tofuSpec = (stateName: string, path = 'modules/basic') => ({
    source: { git: { url: repo.url, ref: 'main', path } },
    stateName,
    vars: { name: 'world', password: { secretRef: { name: 'app-credentials', key: 'password' } } },
  });

  it('applies a tofu module: state in a Secret, sensitive output only in the outputs Secret, never in the control plane', async () => {
    const v = await runJob(t, CID, 'tofu', tofuSpec('infra'), 120_000);
    assert.deepEqual(v.outputs?.outputs, { greeting: 'hello-world' });
    assert.deepEqual(v.outputs?.sensitiveOutputs, ['token']);
    assert.equal(v.outputs?.outputsSecret, 'infra-outputs');
    assert.equal(v.outputs?.namespace, NS);

    const state = await kubeGet<{ data: Record<string, string> }>(env, `/api/v1/namespaces/${NS}/secrets/tfstate-default-infra`);
    assert.ok(state?.data.tfstate, 'the kubernetes backend stored the state');
    const outputs = await secretData(env, NS, 'infra-outputs');
    assert.equal(outputs?.token, `tok-${PASSWORD}`);
    assert.equal(outputs?.greeting, 'hello-world');

    const logs = await jobLogs(t, v.id);
    assert.match(logs, /Apply complete!/);
    for (const needle of [PASSWORD, `tok-${PASSWORD}`]) {
      assert.ok(!JSON.stringify(v).includes(needle) && !logs.includes(needle), 'not in the job view or its logs');
      assert.equal(databaseBytes(t.dataDir).indexOf(needle), -1, `"${needle}" is not in the control plane's SQLite files`);
    }
  });

  it('passes outputs of one flow step (plain and sensitive) into the next', async () => {
    await createNamespace(env, 'flow-app');
    const v = await runJob(t, CID, 'flow', {
      steps: [
        { name: 'infra', type: 'tofu', spec: tofuSpec('flowinfra') },
        {
          name: 'app',
          type: 'helm',
          spec: {
            release: 'app',
            namespace: 'flow-app',
            chart: { git: { url: repo.url, ref: 'main', path: 'chart' } },
            values: { greeting: { outputRef: { step: 'infra', key: 'greeting' } }, token: { outputRef: { step: 'infra', key: 'token' } } },
          },
        },
      ],
    }, 120_000);
    const steps = v.outputs?.steps as { name: string; state: string; outputs?: Record<string, unknown> }[];
    assert.deepEqual(steps.map((s) => [s.name, s.state]), [['infra', 'succeeded'], ['app', 'succeeded']]);
    assert.equal(steps[1]!.outputs?.revision, 1);
    const cm = await kubeGet<{ data: Record<string, string> }>(env, '/api/v1/namespaces/flow-app/configmaps/app-config');
    assert.deepEqual(cm?.data, { greeting: 'hello-world', token: `tok-${PASSWORD}` });
    assert.ok(!JSON.stringify(v).includes(PASSWORD) && !(await jobLogs(t, v.id)).includes(PASSWORD));
    assert.equal(databaseBytes(t.dataDir).indexOf(PASSWORD), -1);
  });

  it('a module whose providers cannot be installed (no registry, not in the mirror) fails saying how to configure a mirror', async () => {
    repo.commit({ 'modules/needs-random/main.tf': 'terraform {\n  required_providers {\n    random = { source = "hashicorp/random" }\n  }\n}\nresource "random_id" "x" {\n  byte_length = 4\n}\n' });
    const v = await waitForJob(t, await submit(t, CID, 'tofu', { source: { git: { url: repo.url, ref: 'main', path: 'modules/needs-random' } }, stateName: 'needs-random' }), 120_000);
    assert.equal(v.state, 'failed');
    assert.match(v.error!.message, /tofu init exited with code 1/);
    assert.match(v.error!.message, /hashicorp\/random/);
    assert.match(v.error!.message, /--tofu-cli-config-file \(env TF_CLI_CONFIG_FILE\)/);
    assert.match(v.error!.message, /--tofu-plugin-cache-dir/);
  });

  it('stops a flow at the first failing step, with a clear error, and runs nothing after it', async () => {
    const cm = (name: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${name}}\ndata: {a: b}\n`;
    const id = await submit(t, CID, 'flow', {
      steps: [
        { name: 'first', type: 'manifest', spec: { manifests: cm('flow-first'), namespace: NS } },
        { name: 'broken', type: 'tofu', spec: { source: { git: { url: repo.url, ref: 'main', path: 'modules/broken' } }, stateName: 'broken' } },
        { name: 'never', type: 'manifest', spec: { manifests: cm('flow-never'), namespace: NS } },
      ],
    });
    const v = await waitForJob(t, id, 120_000);
    assert.equal(v.state, 'failed');
    assert.equal(v.error?.code, 'tofu_failed');
    assert.match(v.error!.message, /flow stopped at step 2\/3 "broken" \(tofu\)/);
    assert.match(v.error!.message, /exit status 3|the provisioner fails on purpose/);
    assert.match(v.error!.message, /first succeeded, broken failed, never skipped/);
    const steps = (v.outputs as { steps: { name: string; state: string }[] } | null)?.steps;
    assert.deepEqual(steps?.map((st) => [st.name, st.state]), [['first', 'succeeded'], ['broken', 'failed'], ['never', 'skipped']], 'every step\'s state is in the outputs');
    assert.ok(await kubeGet(env, `/api/v1/namespaces/${NS}/configmaps/flow-first`));
    assert.equal(await kubeGet(env, `/api/v1/namespaces/${NS}/configmaps/flow-never`), undefined);
  });

  /** Waits for the marker process, then returns the process group it runs in. */
  async function groupOf(marker: string, id: number): Promise<number> {
    const pid = await eventually(() => pidsWithCmdline(marker)[0], 60_000, `a process running "${marker}"`).catch(async (err: Error) => {
      throw new Error(`${err.message}; job ${(await job(t, id)).state}; logs:\n${await jobLogs(t, id)}`);
    });
    const pgid = pgidOf(pid);
    assert.ok(pgid && pgid !== process.pid, 'the tool runs in its own process group');
    return pgid;
  }

  async function assertGroupGone(pgid: number, marker: string) {
    await eventually(() => pidsInGroup(pgid).length === 0 && pidsWithCmdline(marker).length === 0, 15_000, `process group ${pgid} to be gone`)
      .catch((err: Error) => {
        throw new Error(`${err.message}: still running ${JSON.stringify(pidsInGroup(pgid))}`);
      });
  }

  it('cancelling a long tofu apply kills its whole process tree (local-exec sleep included)', async () => {
    const id = await submit(t, CID, 'tofu', { source: { git: { url: repo.url, ref: 'main', path: 'modules/slow' } }, stateName: 'slow' });
    const pgid = await groupOf('sleep 3007', id);
    await t.admin.request('POST', `/v1/commands/${id}/cancel`);
    const v = await waitForJob(t, id, 30_000);
    assert.equal(v.state, 'cancelled');
    await assertGroupGone(pgid, 'sleep 3007');
  });

  it('a helm run past its timeout (a hook that never completes) is timed out and leaves no process behind', async () => {
    await createNamespace(env, 'hooks');
    const id = await submit(t, CID, 'helm', { release: 'hook-timeout-7', namespace: 'hooks', chart: { git: { url: repo.url, ref: 'main', path: 'hook-chart' } } }, { timeoutSeconds: 8 });
    const pgid = await groupOf('hook-timeout-7', id);
    const v = await waitForJob(t, id, 40_000);
    assert.equal(v.state, 'timed_out');
    await assertGroupGone(pgid, 'hook-timeout-7');
  });

  it('leaves no secret value in the control plane\'s own log after these runs', () => {
    const log = cpLog.text();
    assert.match(log, /command claimed/, 'the log was captured');
    assert.equal(log.indexOf(PASSWORD), -1, 'the secret value never reaches the control plane log');
  });
});
