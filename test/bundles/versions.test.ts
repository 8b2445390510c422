/**
 * Desired state, versioned (issue 13): on a real migrated database over HTTPS, without an agent
 * (jobs are cancelled to end them). Each deploy, upgrade and rollback adds a version with its
 * commit, inputs and job; every version stays readable (API and `tether instances history`);
 * `tether deploy --instance OSID --version N` deploys version N's commit and inputs as a new
 * version; retention deleting an old version's job leaves the version readable.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManualClock } from '../../common/clock.ts';
import type { CommandView } from '../../common/wire.ts';
import type { DeployResponse, InstanceVersionView, InstanceView } from '../../control-plane/bundles/bundles.wire.ts';
import { deployVersionArgv } from '../../control-plane/cli/bundles.commands.ts';
import { REPO_ROOT, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { runCli } from '../support/cli.ts';
import { readTree } from '../support/bundles.ts';
import { bareRepo, type BareRepo } from '../cluster-agent/support.ts';

const CID = 'versions';

describe('bundles: desired state versions, history and rollback', function () {
  this.timeout(60_000);
  const clock = new ManualClock();
  let t: TestControlPlane;
  let dir: string;
  let repo: BareRepo;
  let cli: NodeJS.ProcessEnv;
  let osid: string;
  const commits: string[] = [];
  const jobs: number[] = [];

  const versions = async (id = osid) => (await t.admin.request<{ versions: InstanceVersionView[] }>('GET', `/v1/instances/${id}/versions`)).body.versions;
  const instance = async () => (await t.admin.request<InstanceView>('GET', `/v1/instances/${osid}`)).body;
  const cancel = async (id: number) => {
    await t.admin.request('POST', `/v1/commands/${id}/cancel`);
    assert.equal((await t.admin.request<CommandView>('GET', `/v1/commands/${id}`)).body.state, 'cancelled');
  };
  const commandCount = async () => (await t.admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?limit=200')).body.commands.length;
  const refused = async (method: string, path: string, body: unknown, status: number) => {
    const r = await t.admin.request<{ error: { code: string; message: string } }>(method, path, body, { accept: [status] });
    assert.equal(r.status, status);
    return r.body.error;
  };

  before(async () => {
    dir = tempDir('tether-versions-');
    t = await startTestControlPlane({ dataDir: join(dir, 'cp'), allowFileRoots: [dir], retentionSeconds: 3600 }, { clock });
    await t.createCluster(CID);
    repo = bareRepo(dir, 'stacks');
    commits.push(repo.commit(readTree(join(REPO_ROOT, 'bundles/webapp'), 'webapp')));
    await t.admin.request('POST', '/v1/bundles', { name: 'webapp', url: repo.url, ref: 'main', path: 'webapp' });
    writeFileSync(join(dir, 'cp-ca.pem'), t.caPem);
    cli = { TETHER_URL: t.url, TETHER_API_KEY: t.adminToken, TETHER_CA_FILE: join(dir, 'cp-ca.pem'), HOME: dir };
  });
  after(async () => {
    await t?.close();
    if (dir) removeDir(dir);
  });

  it('a deploy is version 1: its commit, resolved inputs and job', async () => {
    const r = await t.admin.request<DeployResponse>('POST', '/v1/instances', { bundle: 'webapp', cluster: CID, inputs: { message: 'one' } });
    osid = r.body.osid;
    jobs.push(r.body.jobId);
    assert.equal(r.body.version, 1);
    assert.equal(r.body.instance.version, 1);
    const [v1, ...rest] = await versions();
    assert.deepEqual(rest, []);
    assert.equal(v1!.version, 1);
    assert.equal(v1!.action, 'deploy');
    assert.equal(v1!.rollbackOf, null);
    assert.equal(v1!.bundle.commit, commits[0]);
    assert.equal(v1!.bundle.path, 'webapp');
    assert.deepEqual(v1!.inputs, { message: 'one', replicas: 1, image: 'nginxinc/nginx-unprivileged:1.27-alpine', ingressClass: 'nginx' });
    assert.deepEqual(v1!.job, { id: r.body.jobId, state: 'queued' });
  });

  it('an upgrade is version 2, at the newly pinned commit, with its inputs; version 1 stays as it was', async () => {
    // One operation at a time: a rollback of a busy instance is refused like an upgrade.
    assert.equal((await refused('POST', `/v1/instances/${osid}/deploy`, { inputs: {}, version: 1 }, 409)).code, 'instance_busy');
    await cancel(jobs[0]!);
    const bundle = readFileSync(join(REPO_ROOT, 'bundles/webapp/bundle.yaml'), 'utf8').replace('version: 1.0.0', 'version: 1.1.0');
    commits.push(repo.commit({ 'webapp/bundle.yaml': bundle }));
    clock.advance(60_000);
    const r = await t.admin.request<DeployResponse>('POST', `/v1/instances/${osid}/deploy`, { inputs: { message: 'two', replicas: 3 } });
    jobs.push(r.body.jobId);
    assert.equal(r.body.version, 2);
    const [v1, v2] = await versions();
    assert.equal(v1!.bundle.commit, commits[0]);
    assert.equal(v1!.inputs.message, 'one');
    assert.deepEqual(v1!.job, { id: jobs[0], state: 'cancelled' });
    assert.equal(v2!.action, 'upgrade');
    assert.equal(v2!.bundle.commit, commits[1]);
    assert.equal(v2!.bundle.version, '1.1.0');
    assert.equal(v2!.inputs.message, 'two');
    assert.equal(v2!.inputs.replicas, 3);
    assert.ok(Date.parse(v2!.createdAt) - Date.parse(v1!.createdAt) >= 60_000, 'each version has its own time');
    const one = (await t.admin.request<InstanceVersionView>('GET', `/v1/instances/${osid}/versions/1`)).body;
    assert.deepEqual(one, v1);
  });

  it('a rollback to version 1 deploys its commit and inputs as version 3', async () => {
    await cancel(jobs[1]!);
    const r = await t.admin.request<DeployResponse>('POST', `/v1/instances/${osid}/deploy`, { inputs: {}, version: 1 });
    assert.equal(r.status, 202);
    jobs.push(r.body.jobId);
    assert.equal(r.body.version, 3);
    const view = await instance();
    assert.equal(view.version, 3);
    assert.equal(view.bundle.commit, commits[0]);
    assert.equal(view.bundle.version, '1.0.0');
    assert.equal(view.inputs.message, 'one');
    assert.equal(view.inputs.replicas, 1);
    const v3 = (await versions())[2]!;
    assert.equal(v3.action, 'rollback');
    assert.equal(v3.rollbackOf, 1);
    assert.equal(v3.bundle.commit, commits[0]);
    assert.deepEqual(v3.inputs, (await versions())[0]!.inputs);
    // The job deploys version 1's commit and inputs.
    const job = (await t.admin.request<CommandView>('GET', `/v1/commands/${r.body.jobId}`)).body;
    const spec = JSON.stringify(job.spec);
    assert.ok(spec.includes(commits[0]!) && !spec.includes(commits[1]!), 'the flow fetches the old commit');
    assert.ok(spec.includes('"one"') && !spec.includes('"two"'), 'the flow has the old inputs');
  });

  it('refuses unknown versions, bad version numbers and inputs with a version, queueing nothing', async () => {
    await cancel(jobs[2]!);
    const before = await commandCount();
    assert.equal((await refused('POST', `/v1/instances/${osid}/deploy`, { inputs: {}, version: 7 }, 404)).code, 'instance_version_not_found');
    assert.equal((await refused('POST', `/v1/instances/${osid}/deploy`, { inputs: { message: 'x' }, version: 1 }, 400)).code, 'invalid_request');
    for (const v of [0, -1, 1.5, '1', 2 ** 40]) await refused('POST', `/v1/instances/${osid}/deploy`, { inputs: {}, version: v }, 400);
    assert.equal(await commandCount(), before, 'nothing was queued');
    assert.equal((await refused('GET', `/v1/instances/${osid}/versions/9`, undefined, 404)).code, 'instance_version_not_found');
    for (const v of ['0', 'abc', '01', '99999999999', '1e3']) await refused('GET', `/v1/instances/${osid}/versions/${v}`, undefined, 400);
    assert.equal((await refused('GET', '/v1/instances/web-zzzzz/versions', undefined, 404)).code, 'instance_not_found');
    assert.equal((await refused('GET', '/v1/instances/web-zzzzz/versions/1', undefined, 404)).code, 'instance_not_found');
    assert.equal((await versions()).length, 3);
  });

  it('tether instances history prints every version; tether deploy --instance --version rolls back', async () => {
    const h = await runCli(['instances', 'history', osid], cli);
    assert.equal(h.code, 0, h.stderr);
    const lines = h.stdout.trim().split('\n');
    assert.match(lines[0]!, /^VERSION\s+WHEN\s+ACTION\s+BUNDLE\s+COMMIT\s+INPUTS\s+JOB/);
    assert.equal(lines.length, 4);
    assert.match(lines[1]!, new RegExp(`^1\\s+\\S+\\s+deploy\\s+webapp 1\\.0\\.0\\s+${commits[0]!.slice(0, 12)}\\s+message=one, replicas=1, .*${jobs[0]} cancelled`));
    assert.match(lines[2]!, new RegExp(`^2\\s+\\S+\\s+upgrade\\s+webapp 1\\.1\\.0\\s+${commits[1]!.slice(0, 12)}\\s+message=two, replicas=3, .*${jobs[1]} cancelled`));
    assert.match(lines[3]!, new RegExp(`^3\\s+\\S+\\s+rollback to 1\\s+webapp 1\\.0\\.0\\s+${commits[0]!.slice(0, 12)}\\s+message=one`));
    const json = await runCli(['instances', 'history', osid, '--json'], cli);
    assert.deepEqual(JSON.parse(json.stdout), await versions());

    const r = await runCli(['deploy', '--instance', osid, '--version', '2'], cli);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\d+\n$/);
    assert.match(r.stderr, /version 4, job \d+/);
    jobs.push(Number(r.stdout.trim()));
    const v4 = (await versions())[3]!;
    assert.equal(v4.rollbackOf, 2);
    assert.equal(v4.bundle.commit, commits[1]);
    assert.equal(v4.inputs.message, 'two');
    await cancel(jobs[3]!);

    const withSet = await runCli(['deploy', '--instance', osid, '--version', '1', '--set', 'message=x'], cli);
    assert.equal(withSet.code, 2, withSet.stderr);
    const noInstance = await runCli(['deploy', 'webapp', '--version', '1'], cli);
    assert.equal(noInstance.code, 2, noInstance.stderr);
    const bad = await runCli(['deploy', '--instance', osid, '--version', 'latest'], cli);
    assert.equal(bad.code, 2, bad.stderr);
    assert.equal((await versions()).length, 4, 'the refused rollbacks added no version');
    const version = await runCli(['--version'], cli);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/, 'tether --version still prints the version');
  });

  it("retention deleting an old version's job leaves the version readable (job state null); the last job is kept", async () => {
    clock.advance(2 * 3600_000);
    const swept = await t.cp.retention.sweep();
    assert.equal(swept.commands, 3, 'the jobs of versions 1 to 3 are deleted; version 4 is the last job');
    const vs = await versions();
    assert.deepEqual(vs.map((v) => v.job), [
      { id: jobs[0], state: null },
      { id: jobs[1], state: null },
      { id: jobs[2], state: null },
      { id: jobs[3], state: 'cancelled' },
    ]);
    const h = await runCli(['instances', 'history', osid], cli);
    assert.match(h.stdout, new RegExp(`${jobs[0]} expired`));
    // A rollback to a version whose job is gone still works.
    const r = await t.admin.request<DeployResponse>('POST', `/v1/instances/${osid}/deploy`, { inputs: {}, version: 1 });
    assert.equal(r.body.version, 5);
    assert.equal((await instance()).inputs.message, 'one');
  });

  it('pages versions: the newest limit below before, oldest first; limits are bounded', async () => {
    const page = async (q: string) => (await t.admin.request<{ versions: InstanceVersionView[] }>('GET', `/v1/instances/${osid}/versions?${q}`)).body.versions.map((v) => v.version);
    assert.deepEqual(await page(''), [1, 2, 3, 4, 5]);
    assert.deepEqual(await page('limit=2'), [4, 5]);
    assert.deepEqual(await page('limit=2&before=4'), [2, 3]);
    assert.deepEqual(await page('before=1'), []);
    for (const q of ['limit=0', 'limit=1001', 'limit=x', 'before=0', 'before=-1']) await refused('GET', `/v1/instances/${osid}/versions?${q}`, undefined, 400);
    const h = await runCli(['instances', 'history', osid, '--limit', '1'], cli);
    assert.equal(h.code, 0, h.stderr);
    assert.deepEqual(h.stdout.trim().split('\n').slice(1).map((l) => l.split(/\s+/)[0]), ['5']);
    assert.equal((await runCli(['instances', 'history', osid, '--limit', '0'], cli)).code, 2);
  });

  it('a sync applies the latest desired state again as the next version; refused while a job runs or for an unknown instance', async () => {
    const last = (await instance()).job.id;
    assert.equal((await refused('POST', `/v1/instances/${osid}/sync`, undefined, 409)).code, 'instance_busy');
    await cancel(last);
    const r = await t.admin.request<DeployResponse>('POST', `/v1/instances/${osid}/sync`);
    assert.equal(r.status, 202);
    assert.equal(r.body.version, 6);
    const [v5, v6] = (await versions()).slice(4);
    assert.equal(v6!.action, 'sync');
    assert.equal(v6!.rollbackOf, null);
    assert.equal(v6!.bundle.commit, v5!.bundle.commit);
    assert.deepEqual(v6!.inputs, v5!.inputs);
    const job = (await t.admin.request<CommandView>('GET', `/v1/commands/${r.body.jobId}`)).body;
    const spec = JSON.stringify(job.spec);
    assert.ok(spec.includes(commits[0]!) && !spec.includes(commits[1]!), 'the flow applies the latest commit again');
    assert.equal((await refused('POST', '/v1/instances/web-zzzzz/sync', undefined, 404)).code, 'instance_not_found');
    await cancel(r.body.jobId);
  });

  it('deployVersionArgv renames --version after the deploy command word only', () => {
    const p = ['node', 'tether'];
    assert.deepEqual(deployVersionArgv([...p, 'deploy', '--instance', 'web-abcde', '--version', '3']), [...p, 'deploy', '--instance', 'web-abcde', '--to-version', '3']);
    assert.deepEqual(deployVersionArgv([...p, '--url', 'https://x', 'deploy', '--version=3']), [...p, '--url', 'https://x', 'deploy', '--to-version=3']);
    assert.deepEqual(deployVersionArgv([...p, '--version']), [...p, '--version']);
    assert.deepEqual(deployVersionArgv([...p, 'bundles', 'register', 'deploy', '--version']), [...p, 'bundles', 'register', 'deploy', '--version']);
    assert.deepEqual(deployVersionArgv([...p, '--url', 'deploy', 'instances', '--version']), [...p, '--url', 'deploy', 'instances', '--version']);
  });
});
