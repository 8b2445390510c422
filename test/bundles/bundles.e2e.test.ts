/**
 * Stack bundles end to end: the example bundles published to a file:// bare repository,
 * registered and deployed with the `tether` CLI to a real kube-apiserver through a real cluster
 * agent process (real helm, tofu and git); upgraded in place, rolled back to an earlier version,
 * deleted in reverse order; invalid bundles refused by `tether bundles validate` and by the deploy
 * API with every problem listed and nothing queued.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { CommandView } from '../../common/wire.ts';
import type { DeployResponse, InstanceView } from '../../control-plane/bundles/bundles.wire.ts';
import { startEnvtest, type Envtest } from '../support/envtest.ts';
import { REPO_ROOT, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { runCli } from '../support/cli.ts';
import { BROKEN_BUNDLE_PROBLEMS, brokenBundle, readTree, type FileMap } from '../support/bundles.ts';
import { bareRepo, createNamespace, jobLogs, kubeGet, secretData, spawnAgent, waitForJob, type AgentProcess, type BareRepo } from '../cluster-agent/support.ts';

const CID = 'stacks';
const AGENT_NS = 'tether-system';

function prefixed(files: FileMap, prefix: string): FileMap {
  return Object.fromEntries(Object.entries(files).map(([k, v]) => [`${prefix}/${k}`, v]));
}

/** Every byte of the control plane's SQLite files. */
function databaseBytes(dataDir: string): Buffer {
  return Buffer.concat(['tether.db', 'tether.db-wal', 'tether.db-shm'].map((f) => join(dataDir, f)).filter(existsSync).map((f) => readFileSync(f)));
}

describe('stack bundles (end to end)', function () {
  this.timeout(240_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let agent: AgentProcess | undefined;
  let repo: BareRepo;
  let cli: NodeJS.ProcessEnv;
  let domain: string;
  let web: string; // OSID of the webapp instance
  let db: string; // OSID of the database instance

  const instance = async (osid: string) => (await t.admin.request<InstanceView>('GET', `/v1/instances/${osid}`)).body;
  const commandCount = async () => (await t.admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?limit=200')).body.commands.length;
  const succeeded = async (id: number, timeoutMs = 150_000) => {
    const v = await waitForJob(t, id, timeoutMs);
    if (v.state !== 'succeeded') assert.fail(`job ${id} ended ${v.state}: ${JSON.stringify(v.error)}\nlogs:\n${await jobLogs(t, id)}`);
    return v;
  };
  const tether = async (args: string[]) => {
    const r = await runCli(args, cli);
    return r;
  };

  before(async function () {
    dir = tempDir('tether-bundles-e2e-');
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp'), allowFileRoots: [dir] })]);
    await t.createCluster(CID);
    domain = (await t.admin.request<{ clusters: { cid: string; domain: string }[] }>('GET', '/v1/clusters')).body.clusters.find((c) => c.cid === CID)!.domain;
    await createNamespace(env, AGENT_NS);
    repo = bareRepo(dir, 'stacks');
    repo.commit({
      ...readTree(join(REPO_ROOT, 'bundles/webapp'), 'webapp'),
      ...readTree(join(REPO_ROOT, 'bundles/database'), 'database'),
      ...prefixed(brokenBundle(), 'broken'),
    });
    writeFileSync(join(dir, 'cp-ca.pem'), t.caPem);
    cli = { TETHER_URL: t.url, TETHER_API_KEY: t.adminToken, TETHER_CA_FILE: join(dir, 'cp-ca.pem'), HOME: dir };
    agent = spawnAgent({ t, env, namespace: AGENT_NS, workDir: join(dir, 'work'), token: await t.bootstrapToken(CID, 'cluster-agent') });
    await agent.waitForLog(/cluster agent running/);
  });

  after(async function () {
    await agent?.stop();
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  it('validates both example bundles, from a folder and from the published git repository', async () => {
    for (const name of ['webapp', 'database']) {
      const local = await tether(['bundles', 'validate', join(REPO_ROOT, 'bundles', name)]);
      assert.equal(local.code, 0, local.stdout + local.stderr);
      assert.match(local.stdout, new RegExp(`bundle ${name} 1\\.0\\.0 is valid`));
      const remote = await tether(['bundles', 'validate', repo.url, '--ref', 'main', '--path', name]);
      assert.equal(remote.code, 0, remote.stdout + remote.stderr);
      assert.match(remote.stdout, /resource\(s\)/);
    }
  });

  it('tether bundles validate lists every problem of an invalid bundle and exits 1', async () => {
    const r = await tether(['bundles', 'validate', repo.url, '--path', 'broken']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    for (const re of BROKEN_BUNDLE_PROBLEMS) assert.match(r.stdout, re);
    assert.match(r.stderr, /problem\(s\); the bundle is invalid/);
    const json = await tether(['bundles', 'validate', repo.url, '--path', 'broken', '--json']);
    assert.equal(json.code, 1);
    const parsed = JSON.parse(json.stdout) as { valid: boolean; problems: { file: string; path: string; message: string }[] };
    assert.equal(parsed.valid, false);
    assert.ok(parsed.problems.length >= BROKEN_BUNDLE_PROBLEMS.length);
  });

  it('registers bundle sources with the CLI and lists them', async () => {
    for (const name of ['webapp', 'database', 'broken']) {
      const r = await tether(['bundles', 'register', name, '--url', repo.url, '--ref', 'main', '--path', name]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^${name}\\t${repo.url}\\tmain\\t${name}\\t[0-9a-f]{40}\\n$`));
    }
    const list = await tether(['bundles', 'list', '--json']);
    assert.deepEqual((JSON.parse(list.stdout) as { name: string }[]).map((b) => b.name), ['broken', 'database', 'webapp']);
    const missing = await tether(['bundles', 'register', 'nowhere', '--url', `file://${dir}/missing.git`]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /bundle_source_unavailable/);
  });

  it('the deploy API refuses invalid bundles and inputs (4xx, every problem) and queues nothing', async () => {
    const before = await commandCount();
    const r = await t.admin.request<{ error: { code: string; message: string } }>('POST', '/v1/instances', { bundle: 'broken', cluster: CID }, { accept: [422] });
    assert.equal(r.status, 422);
    assert.equal(r.body.error.code, 'invalid_bundle');
    for (const re of BROKEN_BUNDLE_PROBLEMS) assert.match(r.body.error.message, re);
    const inputs = await t.admin.request<{ error: { code: string; message: string } }>('POST', '/v1/instances', { bundle: 'webapp', cluster: CID, inputs: { replicas: 'many', colour: 'red' } }, { accept: [400] });
    assert.equal(inputs.status, 400);
    assert.equal(inputs.body.error.code, 'invalid_inputs');
    assert.match(inputs.body.error.message, /unknown input "colour"/);
    assert.match(inputs.body.error.message, /input "replicas" must be a number \(got "many"\)/);
    const cli422 = await tether(['deploy', 'broken', '--cluster', CID]);
    assert.equal(cli422.code, 1);
    assert.match(cli422.stderr, /invalid_bundle: .*dependency cycle: web -> cache -> web/s);
    const unknown = await t.admin.request('POST', '/v1/instances', { bundle: 'nope', cluster: CID }, { accept: [404] });
    assert.equal(unknown.status, 404);
    assert.equal(await commandCount(), before, 'nothing was queued');
    assert.deepEqual((await t.admin.request<{ instances: unknown[] }>('GET', '/v1/instances')).body.instances, []);
  });

  it('deploys the webapp: namespace = OSID, chart objects on <osid>.<clusterDomain>, outputs in the API', async () => {
    const r = await tether(['deploy', 'webapp', '--cluster', CID, '--set', 'message=Hello e2e']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\d+\n$/, 'only the job id on stdout');
    const jobId = Number(r.stdout.trim());
    web = /instance (web-[a-z0-9]{5}) /.exec(r.stderr)![1]!;
    await succeeded(jobId);

    const view = await instance(web);
    assert.equal(view.state, 'deployed');
    assert.equal(view.namespace, web);
    assert.equal(view.host, `${web}.${domain}`);
    assert.deepEqual(view.outputs, { url: `${web}.${domain}`, release: 'app', revision: 1 });
    assert.deepEqual(view.sensitiveOutputs, {});
    assert.match(view.bundle.commit, /^[0-9a-f]{40}$/);

    const ns = await kubeGet<{ metadata: { labels: Record<string, string> } }>(env, `/api/v1/namespaces/${web}`);
    assert.equal(ns?.metadata.labels['tether.dev/instance'], web);
    assert.ok(await kubeGet(env, `/apis/networking.k8s.io/v1/namespaces/${web}/networkpolicies/webapp-ingress-only`), 'the manifest resource was applied from git');
    const dep = await kubeGet<{ spec: { replicas: number; template: { spec: { containers: { env: { name: string; value: string }[] }[] } } } }>(env, `/apis/apps/v1/namespaces/${web}/deployments/app`);
    assert.equal(dep?.spec.replicas, 1);
    assert.equal(dep?.spec.template.spec.containers[0]!.env.find((e) => e.name === 'MESSAGE')?.value, 'Hello e2e');
    assert.ok(await kubeGet(env, `/api/v1/namespaces/${web}/services/app`));
    const ing = await kubeGet<{ spec: { rules: { host: string }[] } }>(env, `/apis/networking.k8s.io/v1/namespaces/${web}/ingresses/app`);
    assert.equal(ing?.spec.rules[0]!.host, `${web}.${domain}`);
    assert.ok(await kubeGet(env, `/api/v1/namespaces/${web}/secrets/sh.helm.release.v1.app.v1`));

    const list = await tether(['instances', 'list', '--json']);
    assert.deepEqual((JSON.parse(list.stdout) as InstanceView[]).map((i) => [i.osid, i.state]), [[web, 'deployed']]);
    const show = await tether(['instances', 'show', web]);
    assert.match(show.stdout, new RegExp(`output url\\s+${web}\\.`));
  });

  it('upgrades the webapp in place with a changed input (helm revision 2, same namespace)', async () => {
    const r = await tether(['deploy', '--instance', web, '--set', 'message=Changed', '--set', 'replicas=2']);
    assert.equal(r.code, 0, r.stderr);
    await succeeded(Number(r.stdout.trim()));
    const view = await instance(web);
    assert.equal(view.state, 'deployed');
    assert.equal(view.outputs.revision, 2);
    assert.equal(view.inputs.message, 'Changed');
    assert.equal(view.inputs.ingressClass, 'nginx');
    const dep = await kubeGet<{ spec: { replicas: number; template: { spec: { containers: { env: { name: string; value: string }[] }[] } } } }>(env, `/apis/apps/v1/namespaces/${web}/deployments/app`);
    assert.equal(dep?.spec.replicas, 2);
    assert.equal(dep?.spec.template.spec.containers[0]!.env.find((e) => e.name === 'MESSAGE')?.value, 'Changed');
    assert.ok(await kubeGet(env, `/api/v1/namespaces/${web}/secrets/sh.helm.release.v1.app.v2`));
    const cm = await kubeGet<{ data: Record<string, string> }>(env, `/api/v1/namespaces/${web}/configmaps/app-content`);
    assert.match(cm!.data['index.html']!, /<p>Changed<\/p>/);
  });

  it('rolls the webapp back to version 1 with deploy --version: the cluster gets the old inputs back, as version 3', async () => {
    const r = await tether(['deploy', '--instance', web, '--version', '1']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /version 3, job \d+/);
    await succeeded(Number(r.stdout.trim()));
    const view = await instance(web);
    assert.equal(view.state, 'deployed');
    assert.equal(view.version, 3);
    assert.equal(view.inputs.message, 'Hello e2e');
    assert.equal(view.outputs.revision, 3, 'a new helm revision, like helm rollback');
    const dep = await kubeGet<{ spec: { replicas: number; template: { spec: { containers: { env: { name: string; value: string }[] }[] } } } }>(env, `/apis/apps/v1/namespaces/${web}/deployments/app`);
    assert.equal(dep?.spec.replicas, 1);
    assert.equal(dep?.spec.template.spec.containers[0]!.env.find((e) => e.name === 'MESSAGE')?.value, 'Hello e2e');
    const cm = await kubeGet<{ data: Record<string, string> }>(env, `/api/v1/namespaces/${web}/configmaps/app-content`);
    assert.match(cm!.data['index.html']!, /<p>Hello e2e<\/p>/);
    const history = await tether(['instances', 'history', web, '--json']);
    const versions = JSON.parse(history.stdout) as { version: number; action: string; rollbackOf: number | null; job: { state: string } }[];
    assert.deepEqual(versions.map((v) => [v.version, v.action, v.rollbackOf, v.job.state]), [
      [1, 'deploy', null, 'succeeded'],
      [2, 'upgrade', null, 'succeeded'],
      [3, 'rollback', 1, 'succeeded'],
    ]);
  });

  it('deploys the database: a tofu-generated password reaches the chart inside the cluster only', async () => {
    const res = await t.admin.request<DeployResponse>('POST', '/v1/instances', { bundle: 'database', cluster: CID, inputs: { username: 'shop' } });
    assert.equal(res.status, 202);
    db = res.body.osid;
    assert.match(db, /^db-[a-z0-9]{5}$/);
    // One operation at a time per instance.
    const busy = await t.admin.request<{ error: { code: string } }>('DELETE', `/v1/instances/${db}`, undefined, { accept: [409] });
    assert.equal(busy.body.error.code, 'instance_busy');
    await succeeded(res.body.jobId);

    const outputs = await secretData(env, db, 'credentials-outputs');
    const password = outputs?.password;
    assert.ok(password && password.length >= 32, 'the outputs Secret holds the password');
    assert.equal(outputs?.username, 'shop');
    const auth = await secretData(env, db, 'server-auth');
    assert.equal(auth?.password, password, 'the chart received the password through the outputRef');
    assert.equal(auth?.username, 'shop');
    assert.ok(await kubeGet(env, `/api/v1/namespaces/${db}/secrets/tfstate-default-credentials`));
    const svc = await kubeGet<{ metadata: { annotations: Record<string, string> } }>(env, `/api/v1/namespaces/${db}/services/server`);
    assert.equal(svc?.metadata.annotations['tether.dev/external-host'], `${db}-5432.${domain}`);

    const view = await instance(db);
    assert.equal(view.state, 'deployed');
    assert.deepEqual(view.outputs, { endpoint: `${db}-5432.${domain}`, service: 'server', username: 'shop', database: 'app' });
    assert.deepEqual(view.sensitiveOutputs.password?.secret, { namespace: db, name: 'credentials-outputs', key: 'password' });
    assert.deepEqual(view.ports, { '5432': `${db}-5432.${domain}` });
    const job = (await t.admin.request<CommandView>('GET', `/v1/commands/${res.body.jobId}`)).body;
    assert.ok(!JSON.stringify(view).includes(password) && !JSON.stringify(job).includes(password), 'no API answer holds the password');
    assert.ok(!(await jobLogs(t, res.body.jobId)).includes(password), 'the job log does not hold the password');
    assert.ok(!databaseBytes(t.dataDir).includes(Buffer.from(password)), "the control plane's database never saw the password");
  });

  it('deletes the webapp in reverse order: release uninstalled, manifests deleted, namespace deleted', async () => {
    const r = await tether(['instances', 'delete', web]);
    assert.equal(r.code, 0, r.stderr);
    const jobId = Number(r.stdout.trim());
    await succeeded(jobId);
    const logs = await jobLogs(t, jobId);
    const at = (s: string) => {
      const i = logs.indexOf(s);
      assert.ok(i >= 0, `log has "${s}":\n${logs}`);
      return i;
    };
    assert.ok(at('helm uninstall app') < at(`deleted NetworkPolicy ${web}/webapp-ingress-only`));
    assert.ok(at(`deleted NetworkPolicy ${web}/webapp-ingress-only`) < at(`deleted Namespace ${web}`));
    for (const path of [
      `/apis/apps/v1/namespaces/${web}/deployments/app`,
      `/api/v1/namespaces/${web}/services/app`,
      `/apis/networking.k8s.io/v1/namespaces/${web}/ingresses/app`,
      `/api/v1/namespaces/${web}/configmaps/app-content`,
      `/api/v1/namespaces/${web}/secrets/sh.helm.release.v1.app.v1`,
      `/api/v1/namespaces/${web}/secrets/sh.helm.release.v1.app.v2`,
      `/api/v1/namespaces/${web}/secrets/sh.helm.release.v1.app.v3`,
      `/apis/networking.k8s.io/v1/namespaces/${web}/networkpolicies/webapp-ingress-only`,
    ]) {
      assert.equal(await kubeGet(env, path), undefined, `${path} is gone`);
    }
    // Without controllers the namespace never finishes terminating: it is marked for deletion.
    const ns = await kubeGet<{ metadata: { deletionTimestamp?: string } }>(env, `/api/v1/namespaces/${web}`);
    assert.ok(ns === undefined || ns.metadata.deletionTimestamp, 'the namespace is being deleted');
    const view = await instance(web);
    assert.equal(view.state, 'deleted');
    assert.deepEqual(view.outputs, {});
    const again = await t.admin.request<{ error: { code: string } }>('POST', `/v1/instances/${web}/deploy`, { inputs: {} }, { accept: [409] });
    assert.equal(again.body.error.code, 'instance_deleted');
  });

  it('deletes the database: helm uninstall, then tofu destroy with the same state', async () => {
    const r = await t.admin.request<DeployResponse>('DELETE', `/v1/instances/${db}`);
    assert.equal(r.status, 202);
    await succeeded(r.body.jobId);
    const logs = await jobLogs(t, r.body.jobId);
    assert.ok(logs.indexOf('helm uninstall server') < logs.indexOf('tofu destroy'), logs);
    assert.equal(await kubeGet(env, `/api/v1/namespaces/${db}/secrets/server-auth`), undefined);
    assert.equal(await kubeGet(env, `/api/v1/namespaces/${db}/secrets/sh.helm.release.v1.server.v1`), undefined);
    assert.equal(await kubeGet(env, `/api/v1/namespaces/${db}/secrets/credentials-outputs`), undefined, 'the outputs Secret is deleted');
    const state = await secretData(env, db, 'tfstate-default-credentials');
    const raw = await kubeGet<{ data: { tfstate: string } }>(env, `/api/v1/namespaces/${db}/secrets/tfstate-default-credentials`);
    assert.ok(state && raw, 'the state Secret remains');
    const tfstate = JSON.parse(gunzipSync(Buffer.from(raw.data.tfstate, 'base64')).toString('utf8')) as { resources: unknown[] };
    assert.deepEqual(tfstate.resources, [], 'tofu destroyed every resource');
    assert.equal((await instance(db)).state, 'deleted');
  });
});
