/**
 * Desired state, drift and sync end to end (issue 13), on a real kube-apiserver with a real
 * cluster agent process, real helm and real tofu with the real hashicorp/kubernetes provider,
 * driven by the real `tether` CLI. One instance of a bundle with a manifest resource (two
 * ConfigMaps), a helm resource (a chart with a ConfigMap) and a tofu resource (a ConfigMap
 * through the kubernetes provider), deployed once and used by every case in sequence:
 * (a) an object deleted, (b) a field Tether owns edited, (c) a `helm rollback` by hand, (d) a
 * tofu-managed object changed out of band: each `tether diff` exits 2 naming the resource with a
 * readable diff, `tether sync --yes` repairs it, the next diff exits 0. A field another field
 * manager sets is not drift. An upgrade to a version without the helm resource and one of the
 * ConfigMaps shows both in the plan first, then prunes them. `tether pull`, then `diff --file`
 * exits 0; an input edited in the file exits 2; `sync --file --yes` applies it as a new version.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { DeployResponse, InstanceVersionView, InstanceView } from '../../control-plane/bundles/bundles.wire.ts';
import { kubeRequest, startEnvtest, type Envtest } from '../support/envtest.ts';
import { nodeArgs, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { runCli, type CliResult } from '../support/cli.ts';
import { toolPath, tofuProviderMirror, tofuProviderVersion } from '../support/toolchain.ts';
import { bareRepo, createNamespace, jobLogs, kubeGet, spawnAgent, waitForJob, type AgentProcess } from '../cluster-agent/support.ts';

const execFileP = promisify(execFile);
const CID = 'sync';
const AGENT_NS = 'tether-system';

const BUNDLE = (resources: string) => `apiVersion: tether.dev/v1
name: stack
version: 1.0.0
type: stk
inputs:
  message: {type: string, default: hello}
resources:
${resources}`;
const MANIFEST = '  - name: config\n    type: manifest\n    source: manifests\n';
const HELM = '  - name: app\n    type: helm\n    source: chart\n    dependsOn: [config]\n    values:\n      message: {inputRef: message}\n';
const TOFU = '  - name: cfg\n    type: tofu\n    source: modules/cfg\n    vars:\n      greeting: {inputRef: message}\n      namespace: {valueRef: namespace}\n';
const MODULE = `terraform {
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
variable "namespace" {
  type = string
}
provider "kubernetes" {}
resource "kubernetes_config_map" "cfg" {
  metadata {
    name      = "tofu-cfg"
    namespace = var.namespace
  }
  data = {
    greeting = var.greeting
  }
}
`;

describe('bundles: tether diff, sync, pull and pruning (end to end)', function () {
  this.timeout(900_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let work: string;
  let agent: AgentProcess | undefined;
  let cli: NodeJS.ProcessEnv;
  let osid: string;
  let repo: ReturnType<typeof bareRepo>;

  const tether = (...args: string[]) => runCli(args, cli, undefined, work);
  /** The CLI on a terminal (a pty from util-linux script), answering `answer` to its question; stdout and stderr together. */
  const onTerminal = (answer: string, ...args: string[]) =>
    new Promise<CliResult>((resolve) => {
      const [cmd, argv] = nodeArgs('control-plane/cli/main.ts', args);
      const line = [cmd, ...argv].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
      const p = spawn('script', ['-qefc', line, '/dev/null'], { cwd: work, env: { ...process.env, ...cli }, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      p.stdout.on('data', (d) => (stdout += d));
      p.stderr.on('data', (d) => (stdout += d));
      p.on('close', (code) => resolve({ code, stdout, stderr: '' }));
      p.stdin.end(`${answer}\n`);
    });
  const instance = async () => (await t.admin.request<InstanceView>('GET', `/v1/instances/${osid}`)).body;
  const versions = async () => (await t.admin.request<{ versions: InstanceVersionView[] }>('GET', `/v1/instances/${osid}/versions`)).body.versions;
  const configMap = (name: string) => kubeGet<{ data?: Record<string, string>; metadata: { managedFields?: { manager: string }[] } }>(env, `/api/v1/namespaces/${osid}/configmaps/${name}`);
  const helmByHand = (args: string[]) => execFileP(toolPath('helm'), [...args, `--namespace=${osid}`, `--kubeconfig=${env.kubeconfigPath}`]);
  const succeeded = async (id: number) => {
    const v = await waitForJob(t, id, 300_000);
    if (v.state !== 'succeeded') assert.fail(`job ${id} ended ${v.state}: ${JSON.stringify(v.error)}\nlogs:\n${await jobLogs(t, id)}`);
    return v;
  };
  /** tether diff exits 2 (stdout returned), then tether sync --yes repairs it, then tether diff exits 0. */
  async function driftedThenSynced(expect: RegExp[], how: 'yes' | 'terminal' = 'yes'): Promise<string> {
    const d = await tether('diff', osid);
    assert.equal(d.code, 2, d.stdout + d.stderr);
    for (const re of expect) assert.match(d.stdout, re);
    const before = (await instance()).version;
    const s = how === 'yes' ? await tether('sync', osid, '--yes') : await onTerminal('y', 'sync', osid);
    assert.equal(s.code, 0, s.stdout + s.stderr);
    const plan = s.stdout.replace(/\r\n/g, '\n');
    for (const re of expect) assert.match(plan, re, 'sync prints the plan first');
    if (how === 'terminal') assert.match(plan, /Apply\? \[y\/N\] /);
    assert.match(s.stdout + s.stderr, new RegExp(`applying ${osid} as version ${before + 1}: job \\d+`));
    assert.equal((await instance()).version, before + 1);
    assert.equal((await versions()).at(-1)!.action, 'sync');
    const after = await tether('diff', osid);
    assert.equal(after.code, 0, after.stdout + after.stderr);
    assert.match(after.stdout, /^in sync$/m);
    return d.stdout;
  }

  before(async function () {
    dir = tempDir('tether-sync-e2e-');
    work = join(dir, 'user');
    mkdirSync(work);
    mkdirSync(join(dir, 'plugin-cache'));
    const tofurc = join(dir, 'mirror-tofurc');
    writeFileSync(tofurc, `disable_checkpoint = true\nprovider_installation {\n  filesystem_mirror {\n    path = "${tofuProviderMirror()}"\n  }\n}\n`);
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp'), allowFileRoots: [dir] })]);
    await t.createCluster(CID);
    await createNamespace(env, AGENT_NS);
    repo = bareRepo(dir, 'stacks');
    repo.commit({
      'stack/bundle.yaml': BUNDLE(MANIFEST + HELM + TOFU),
      'stack/manifests/settings.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: auto\n',
      'stack/manifests/extra.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  note: pruned later\n',
      'stack/chart/Chart.yaml': 'apiVersion: v2\nname: app\nversion: 0.1.0\n',
      'stack/chart/values.yaml': 'message: hi\n',
      'stack/chart/templates/configmap.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata:\n  message: {{ .Values.message | quote }}\n',
      'stack/modules/cfg/main.tf': MODULE,
    });
    await t.admin.request('POST', '/v1/bundles', { name: 'stack', url: repo.url, ref: 'main', path: 'stack' });
    writeFileSync(join(dir, 'cp-ca.pem'), t.caPem);
    cli = { TETHER_URL: t.url, TETHER_API_KEY: t.adminToken, TETHER_CA_FILE: join(dir, 'cp-ca.pem'), HOME: dir };
    agent = spawnAgent({
      t,
      env,
      namespace: AGENT_NS,
      workDir: join(dir, 'work'),
      token: await t.bootstrapToken(CID, 'cluster-agent'),
      args: [`--tofu-cli-config-file=${tofurc}`, `--tofu-plugin-cache-dir=${join(dir, 'plugin-cache')}`],
    });
    await agent.waitForLog(/cluster agent running/);
    const r = await t.admin.request<DeployResponse>('POST', '/v1/instances', { bundle: 'stack', cluster: CID, inputs: {} });
    osid = r.body.osid;
    await succeeded(r.body.jobId);
  });

  after(async function () {
    await agent?.stop('SIGKILL');
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  it('deployed: diff exits 0; sync has nothing to change and applies nothing; without a terminal and --yes it refuses', async () => {
    const d = await tether('diff', osid);
    assert.equal(d.code, 0, d.stdout + d.stderr);
    const s = await tether('sync', osid, '--yes');
    assert.equal(s.code, 0, s.stdout + s.stderr);
    assert.match(s.stdout, /^nothing to change: not applied/m);
    assert.equal((await instance()).version, 1);
    // Something to change, no terminal (stdin is a pipe), no --yes: the plan, then exit 1, nothing applied.
    assert.equal((await kubeRequest(env, 'DELETE', `/api/v1/namespaces/${osid}/configmaps/extra`)).status, 200);
    const refused = await tether('sync', osid);
    assert.equal(refused.code, 1, refused.stdout + refused.stderr);
    assert.match(refused.stdout, new RegExp(`^=== config: v1 ConfigMap ${osid}/extra: missing$`, 'm'));
    assert.match(refused.stderr, /not a terminal: pass --yes to apply/);
    // On a terminal it asks; anything but y or yes applies nothing.
    const declined = await onTerminal('n', 'sync', osid);
    assert.equal(declined.code, 1, declined.stdout);
    assert.match(declined.stdout, /Apply\? \[y\/N\] /);
    assert.match(declined.stdout, /not applied/);
    assert.equal((await instance()).version, 1);
    assert.equal(await configMap('extra'), undefined, 'nothing applied');
  });

  it('(a) an object deleted by hand: diff 2 names it missing; sync on a terminal, answered y, repairs it; diff 0', async () => {
    await driftedThenSynced([new RegExp(`^=== config: v1 ConfigMap ${osid}/extra: missing$`, 'm')], 'terminal');
    assert.equal((await configMap('extra'))?.data?.note, 'pruned later');
  });

  it('(b) a field Tether owns edited by hand: diff 2 with the diff of it; sync --yes repairs it', async () => {
    const p = await kubeRequest(env, 'PATCH', `/api/v1/namespaces/${osid}/configmaps/settings?fieldManager=kubectl-edit`, { data: { mode: 'manual' } }, { contentType: 'application/merge-patch+json' });
    assert.equal(p.status, 200, p.text);
    await driftedThenSynced([new RegExp(`^=== config: v1 ConfigMap ${osid}/settings: drifted$`, 'm'), /^-  mode: manual$/m, /^\+  mode: auto$/m]);
    assert.equal((await configMap('settings'))?.data?.mode, 'auto');
  });

  it('(c) a helm rollback by hand: diff 2 names the release and the revision; sync --yes repairs it', async () => {
    await helmByHand(['rollback', 'app', '1']);
    const out = await driftedThenSynced([new RegExp(`^=== app: helm\\.sh/v3 Release ${osid}/app: drifted$`, 'm'), /^the deployed revision \d+ was not made by Tether \(Rollback to 1\)$/m]);
    assert.doesNotMatch(out, /=== config:|=== cfg:/, 'only the release drifted');
    const { stdout } = await helmByHand(['history', 'app', '--max=1', '--output=json']);
    assert.equal((JSON.parse(stdout) as { description: string }[])[0]!.description, 'Applied by tether');
  });

  it('(d) a tofu-managed object changed out of band: diff 2 names the resource address; sync --yes repairs it', async () => {
    const p = await kubeRequest(env, 'PATCH', `/api/v1/namespaces/${osid}/configmaps/tofu-cfg?fieldManager=kubectl-edit`, { data: { greeting: 'out-of-band' } }, { contentType: 'application/merge-patch+json' });
    assert.equal(p.status, 200, p.text);
    await driftedThenSynced([/^=== cfg: kubernetes_config_map\.cfg: drifted$/m, /^update$/m]);
    assert.equal((await configMap('tofu-cfg'))?.data?.greeting, 'hello');
  });

  it('a field another field manager (a controller) sets is not drift', async () => {
    const body = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: osid, annotations: { 'example.com/seen': 'yes' } }, data: { 'controller-key': 'set by a controller' } };
    const p = await kubeRequest(env, 'PATCH', `/api/v1/namespaces/${osid}/configmaps/settings?fieldManager=some-controller`, body, { contentType: 'application/apply-patch+yaml' });
    assert.equal(p.status, 200, p.text);
    assert.ok((await configMap('settings'))!.metadata.managedFields!.some((m) => m.manager === 'some-controller'));
    const d = await tether('diff', osid);
    assert.equal(d.code, 0, d.stdout + d.stderr);
    assert.equal((await configMap('settings'))?.data?.['controller-key'], 'set by a controller');
  });

  it('an upgrade to a version without the helm resource and one ConfigMap: the plan shows both, then the upgrade prunes them', async () => {
    const commit2 = repo.commit({ 'stack/bundle.yaml': BUNDLE(MANIFEST + TOFU), 'stack/manifests/extra.yaml': null, 'stack/chart/Chart.yaml': null, 'stack/chart/values.yaml': null, 'stack/chart/templates/configmap.yaml': null });
    // The plan of that state, through a pulled folder whose commit is edited (nothing changes yet).
    const pull = await tether('pull', osid);
    assert.equal(pull.code, 0, pull.stdout + pull.stderr);
    const folder = join(work, `tether.${CID}.${osid}`);
    const file = join(folder, 'tether.yaml');
    const pulled = readFileSync(file, 'utf8');
    writeFileSync(file, pulled.replace(/^( {2}commit: )[0-9a-f]{40}$/m, `$1${commit2}`));
    const plan = await tether('diff', '--file', folder);
    assert.equal(plan.code, 2, plan.stdout + plan.stderr);
    assert.match(plan.stdout, /^=== app: helm resource no longer in the desired state: would be removed \(helm uninstall\)$/m);
    assert.match(plan.stdout, new RegExp(`^=== config: v1 ConfigMap ${osid}/extra: prune \\(no longer in the desired state: would be deleted\\)$`, 'm'));
    assert.ok(await configMap('extra'), 'the plan deleted nothing');
    assert.ok(await configMap('app-config'), 'the plan uninstalled nothing');
    assert.equal((await instance()).syncStatus, 'synced', 'a diff of another state does not change the instance status');
    writeFileSync(file, pulled);

    const up = await tether('deploy', '--instance', osid);
    assert.equal(up.code, 0, up.stdout + up.stderr);
    const job = await succeeded((await instance()).job.id);
    const logs = await jobLogs(t, job.id);
    assert.match(logs, new RegExp(`pruned ConfigMap ${osid}/extra`));
    const steps = (job.outputs as { steps: { name: string; state: string }[] }).steps.map((s) => `${s.name}=${s.state}`);
    assert.deepEqual(steps, ['tether-namespace=succeeded', 'config=succeeded', 'cfg=succeeded', 'app=succeeded'], 'the removal after the new steps');
    assert.equal(await configMap('extra'), undefined, 'the ConfigMap was pruned');
    assert.equal(await configMap('app-config'), undefined, 'the release was uninstalled');
    await assert.rejects(helmByHand(['status', 'app']), /not found/);
    assert.equal((await configMap('settings'))?.data?.['controller-key'], 'set by a controller', 'kept objects are untouched');
    assert.ok(await configMap('tofu-cfg'));
    const d = await tether('diff', osid);
    assert.equal(d.code, 0, d.stdout + d.stderr);
    assert.equal((await versions()).at(-1)!.action, 'upgrade');
  });

  it('pull, then diff --file exits 0; an input edited in the file exits 2; sync --file --yes applies it as the next version', async () => {
    const pull = await tether('pull', osid);
    assert.equal(pull.code, 0, pull.stdout + pull.stderr);
    assert.match(pull.stdout, /tether\.yaml\tupdated/);
    const folder = join(work, `tether.${CID}.${osid}`);
    const file = join(folder, 'tether.yaml');
    assert.match(readFileSync(file, 'utf8'), /^ {2}message: hello$/m);
    const same = await tether('diff', '--file', folder);
    assert.equal(same.code, 0, same.stdout + same.stderr);

    writeFileSync(file, readFileSync(file, 'utf8').replace(/^( {2}message: )hello$/m, '$1from the file'));
    const edited = await tether('diff', '--file', folder);
    assert.equal(edited.code, 2, edited.stdout + edited.stderr);
    assert.match(edited.stdout, /^=== cfg: kubernetes_config_map\.cfg: drifted$/m);

    const before = (await instance()).version;
    const s = await tether('sync', '--file', folder, '--yes');
    assert.equal(s.code, 0, s.stdout + s.stderr);
    assert.equal((await configMap('tofu-cfg'))?.data?.greeting, 'from the file');
    const h = await tether('instances', 'history', osid);
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stdout, new RegExp(`^${before + 1}\\s.*\\bsync\\b.*message=from the file`, 'm'));
    const own = await tether('diff', osid);
    assert.equal(own.code, 0, own.stdout + own.stderr);

    // Another instance's folder is never overwritten.
    const clash = await runCli(['pull', osid, '--dir', join(dir, 'elsewhere')], cli, undefined, work);
    assert.equal(clash.code, 0, clash.stderr);
    writeFileSync(join(dir, 'elsewhere', `tether.${CID}.${osid}`, 'tether.yaml'), readFileSync(file, 'utf8').replace(`instance: ${osid}`, 'instance: stk-zzzzz'));
    const refused = await runCli(['pull', osid, '--dir', join(dir, 'elsewhere')], cli, undefined, work);
    assert.equal(refused.code, 1, refused.stdout + refused.stderr);
    assert.match(refused.stderr, /holds the state of instance stk-zzzzz .*not overwritten/);
  });
});
