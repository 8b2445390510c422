/**
 * Drift of an instance end to end (issue 13): the webapp bundle (a manifest and a helm chart)
 * deployed through a real cluster agent process to a real kube-apiserver, then checked with
 * `tether diff` (a real CLI process): in sync exits 0; an object deleted by hand, or a field
 * Tether owns edited by hand, exits 2 naming it with a readable diff; the instance records
 * syncStatus drifted; a redeploy repairs it and the next diff exits 0.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandView } from '../../common/wire.ts';
import type { DeployResponse, InstanceView } from '../../control-plane/bundles/bundles.wire.ts';
import { kubeRequest, startEnvtest, type Envtest } from '../support/envtest.ts';
import { REPO_ROOT, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { runCli } from '../support/cli.ts';
import { readTree } from '../support/bundles.ts';
import { bareRepo, createNamespace, jobLogs, secretData, spawnAgent, waitForJob, type AgentProcess } from '../cluster-agent/support.ts';

const CID = 'drift';
const AGENT_NS = 'tether-system';

describe('bundles: tether diff OSID (end to end)', function () {
  this.timeout(300_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let agent: AgentProcess | undefined;
  let cli: NodeJS.ProcessEnv;
  let osid: string;

  const instance = async () => (await t.admin.request<InstanceView>('GET', `/v1/instances/${osid}`)).body;
  const succeeded = async (id: number) => {
    const v = await waitForJob(t, id, 150_000);
    if (v.state !== 'succeeded') assert.fail(`job ${id} ended ${v.state}: ${JSON.stringify(v.error)}\nlogs:\n${await jobLogs(t, id)}`);
    return v;
  };
  const diff = (...args: string[]) => runCli(['diff', osid, ...args], cli);

  before(async function () {
    dir = tempDir('tether-diff-e2e-');
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp'), allowFileRoots: [dir] })]);
    await t.createCluster(CID);
    await createNamespace(env, AGENT_NS);
    const repo = bareRepo(dir, 'stacks');
    repo.commit({ ...readTree(join(REPO_ROOT, 'bundles/webapp'), 'webapp'), ...readTree(join(REPO_ROOT, 'bundles/database'), 'database') });
    await t.admin.request('POST', '/v1/bundles', { name: 'webapp', url: repo.url, ref: 'main', path: 'webapp' });
    await t.admin.request('POST', '/v1/bundles', { name: 'database', url: repo.url, ref: 'main', path: 'database' });
    writeFileSync(join(dir, 'cp-ca.pem'), t.caPem);
    cli = { TETHER_URL: t.url, TETHER_API_KEY: t.adminToken, TETHER_CA_FILE: join(dir, 'cp-ca.pem'), HOME: dir };
    agent = spawnAgent({ t, env, namespace: AGENT_NS, workDir: join(dir, 'work'), token: await t.bootstrapToken(CID, 'cluster-agent') });
    await agent.waitForLog(/cluster agent running/);
    const r = await t.admin.request<DeployResponse>('POST', '/v1/instances', { bundle: 'webapp', cluster: CID, inputs: { replicas: 2 } });
    osid = r.body.osid;
    await succeeded(r.body.jobId);
  });

  after(async function () {
    await agent?.stop();
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  it('an instance never checked is unknown; just deployed, tether diff exits 0 and records synced', async () => {
    assert.equal((await instance()).syncStatus, 'unknown');
    assert.equal((await instance()).lastCheckedAt, null);
    const r = await diff();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^in sync$/m);
    const view = await instance();
    assert.equal(view.syncStatus, 'synced');
    assert.ok(view.lastCheckedAt && Number.isFinite(Date.parse(view.lastCheckedAt)));
    // The diff job is a flow of diff steps, one per step of the apply flow, changing nothing.
    const jobs = (await t.admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?limit=10')).body.commands;
    const job = jobs.find((j) => JSON.stringify(j.spec).includes('"type":"diff"'))!;
    assert.deepEqual((job.spec as { steps: { name: string; type: string; spec: { target: string } }[] }).steps.map((s) => [s.name, s.type, s.spec.target]), [
      ['tether-namespace', 'diff', 'manifest'],
      ['policy', 'diff', 'manifest'],
      ['app', 'diff', 'helm'],
    ]);
  });

  it('an object deleted by hand: exit 2 naming it as missing; the instance view says drifted', async () => {
    const del = await kubeRequest(env, 'DELETE', `/apis/networking.k8s.io/v1/namespaces/${osid}/networkpolicies/webapp-ingress-only`);
    assert.equal(del.status, 200, del.text);
    const r = await diff();
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^=== policy: networking\\.k8s\\.io/v1 NetworkPolicy ${osid}/webapp-ingress-only: missing$`, 'm'));
    assert.doesNotMatch(r.stdout, /^in sync$/m);
    const view = await instance();
    assert.equal(view.syncStatus, 'drifted');
    const list = await runCli(['instances', 'list'], cli);
    assert.match(list.stdout, new RegExp(`^${osid}\\s.*\\sdrifted\\s`, 'm'));
    const show = await runCli(['instances', 'show', osid], cli);
    assert.match(show.stdout, /^sync\s+drifted \(checked /m);
  });

  it('a field Tether owns edited by hand: exit 2 with a readable diff of it', async () => {
    const patch = await kubeRequest(env, 'PATCH', `/apis/apps/v1/namespaces/${osid}/deployments/app?fieldManager=kubectl-edit`, { spec: { replicas: 5 } }, { contentType: 'application/merge-patch+json' });
    assert.equal(patch.status, 200, patch.text);
    const r = await diff('--follow');
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^=== app: apps/v1 Deployment ${osid}/app: drifted$`, 'm'));
    assert.match(r.stdout, /^-  replicas: 5$/m);
    assert.match(r.stdout, /^\+  replicas: 2$/m);
    assert.match(r.stdout, /step "app" succeeded/, '--follow prints the job log');
  });

  it('a redeploy repairs it: tether deploy --instance, then tether diff exits 0 and records synced', async () => {
    const d = await runCli(['deploy', '--instance', osid], cli);
    assert.equal(d.code, 0, d.stdout + d.stderr);
    await succeeded((await instance()).job.id);
    const r = await diff();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal((await instance()).syncStatus, 'synced');
  });

  it('a tofu resource and a chart fed its (sensitive) outputs: in sync after deploy, the password never in the control plane', async () => {
    const r = await t.admin.request<DeployResponse>('POST', '/v1/instances', { bundle: 'database', cluster: CID, inputs: { username: 'shop' } });
    await succeeded(r.body.jobId);
    const d = await runCli(['diff', r.body.osid, '--json'], cli);
    assert.equal(d.code, 0, d.stdout + d.stderr);
    const steps = (JSON.parse(d.stdout) as { steps: { name: string; state: string; outputs: { summary: { drifted: number; missing: number; error: number } } }[] }).steps;
    assert.deepEqual(steps.map((s) => [s.name, s.state]), [['tether-namespace', 'succeeded'], ['credentials', 'succeeded'], ['server', 'succeeded']]);
    for (const s of steps) assert.equal(s.outputs.summary.drifted + s.outputs.summary.missing + s.outputs.summary.error, 0, JSON.stringify(s));
    const password = (await secretData(env, r.body.osid, 'credentials-outputs'))?.password;
    assert.ok(password && password.length >= 32);
    const jobs = (await t.admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?limit=50')).body.commands;
    assert.ok(!JSON.stringify(jobs).includes(password), 'the password is in no job spec or outputs');
  });

  it('exits 1 when the diff itself cannot run (an unknown instance, bad usage), never 2', async () => {
    const r = await runCli(['diff', 'web-zzzzz'], cli);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /instance_not_found/);
    // Bad usage too: 2 would read as drift.
    for (const args of [['diff', 'NOT_AN_OSID'], ['diff'], ['diff', osid, '--no-such-option']]) {
      const bad = await runCli(args, cli);
      assert.equal(bad.code, 1, `${args.join(' ')}: ${bad.stdout}${bad.stderr}`);
    }
  });
});
