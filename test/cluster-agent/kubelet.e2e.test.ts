/**
 * The cluster agent as users deploy it: `helm install` of charts/cluster-agent on a real
 * single-node Kubernetes (test/support/kubelet-cluster.ts: kubelet + containerd + runc + CNI), the
 * image built by scripts/images.sh, a real control plane reachable on the node's address. The Pod
 * starts with its ServiceAccount, bootstraps, keeps its identity in its Secret, runs a manifest, a
 * helm and a tofu command (sources served over smart HTTP by `git http-backend`), survives its replacement without a
 * token, settles a command exactly once across `helm upgrade`, and leaves nothing after uninstall.
 */
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isTerminal, type AgentView, type CommandView } from '../../common/wire.ts';
import { eventually, REPO_ROOT, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { buildImages, imagesUnavailable, type BuiltImage } from '../support/oci-image.ts';
import { kubeletClusterUnavailable, startKubeletCluster, type KubeletCluster } from '../support/kubelet-cluster.ts';
import { toolPath } from '../support/toolchain.ts';
import { bareRepo, createNamespace, job, kubeGet, runJob, secretData, submit, waitForJob, type BareRepo } from './support.ts';

const execFileP = promisify(execFile);
const CID = 'kube';
const NS = 'tether-system';
const RELEASE = 'tether-agent';

const CHART = {
  'charts/hello/Chart.yaml': 'apiVersion: v2\nname: hello\nversion: 0.1.0\nappVersion: "1.0"\n',
  'charts/hello/values.yaml': 'greeting: hello\n',
  'charts/hello/templates/configmap.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata:\n  greeting: {{ .Values.greeting | quote }}\n',
};
const MODULE = 'resource "terraform_data" "thing" {\n  input = "hello-from-pod"\n}\noutput "greeting" {\n  value = terraform_data.thing.output\n}\n';
const SLOW_MODULE = 'resource "terraform_data" "slow" {\n  provisioner "local-exec" {\n    command = "sleep 20"\n  }\n}\n';

/** Smart-HTTP git server for Pods: each request runs `git http-backend` (CGI) on the repos in `root`. */
function serveGit(root: string, host: string): Promise<Server> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const cgi = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env['PATH'],
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        REQUEST_METHOD: req.method ?? 'GET',
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        REMOTE_ADDR: req.socket.remoteAddress ?? '',
        ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] } : {}),
        ...(req.headers['git-protocol'] ? { GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (d: Buffer) => {
      if (headersDone) return void res.write(d);
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      headersDone = true;
      let status = 200;
      for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
        const i = line.indexOf(':');
        const name = line.slice(0, i).trim();
        const value = line.slice(i + 1).trim();
        if (name.toLowerCase() === 'status') status = parseInt(value, 10);
        else res.setHeader(name, value);
      }
      res.writeHead(status);
      res.write(head.subarray(end + 4));
    });
    cgi.stdout.on('end', () => res.end());
  });
  return new Promise((resolve) => server.listen(0, host, () => resolve(server)));
}

interface PodView {
  metadata: { name: string; uid: string; deletionTimestamp?: string };
  spec: { serviceAccountName?: string };
  status: { phase?: string; conditions?: { type: string; status: string }[]; containerStatuses?: { ready: boolean; restartCount: number; containerID?: string }[] };
}

describe('cluster agent as a Pod on a real kubelet (end to end)', function () {
  this.timeout(20 * 60_000);
  let k: KubeletCluster;
  let t: TestControlPlane;
  let dir: string;
  let image: BuiltImage;
  let repo: BareRepo;
  let gitServer: Server | undefined;
  let gitUrl: string;
  let valuesFile: string;

  const helm = async (args: string[]) => {
    try {
      return (await execFileP(toolPath('helm'), [...args, '--kubeconfig', k.env.kubeconfigPath], { maxBuffer: 16 << 20, env: { ...process.env, HELM_CACHE_HOME: join(dir, 'helm-cache'), HELM_CONFIG_HOME: join(dir, 'helm-config'), HELM_DATA_HOME: join(dir, 'helm-data') } })).stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`helm ${args.join(' ')}: ${e.message}\n${e.stderr ?? ''}`);
    }
  };
  const agentPods = async () =>
    (await kubeGet<{ items: PodView[] }>(k.env, `/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(`app.kubernetes.io/instance=${RELEASE}`)}`))?.items ?? [];
  const readyPod = (exceptUid?: string) =>
    eventually(async () => {
      const pods = (await agentPods()).filter((p) => !p.metadata.deletionTimestamp && p.metadata.uid !== exceptUid);
      const p = pods.find((x) => x.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      return p;
    }, 5 * 60_000, 'a Ready agent Pod');
  const podLogs = async (name: string) => k.containerLog(NS, name, 'agent');
  const agents = async () => (await t.admin.request<{ agents: AgentView[] }>('GET', `/v1/agents?cluster=${CID}`)).body.agents;

  before(async function () {
    const why = imagesUnavailable() ?? kubeletClusterUnavailable();
    if (why) {
      console.warn(`    kubelet e2e: skipped: ${why}`);
      this.skip();
    }
    dir = tempDir('tether-kubelet-e2e-');
    const images = await buildImages(['cluster-agent', 'pause']);
    image = images['cluster-agent'];
    const pause = images.pause;
    k = await startKubeletCluster({ images: [pause.archive, image.archive] });
    t = await startTestControlPlane({ dataDir: join(dir, 'cp'), host: '0.0.0.0', sans: [k.nodeIp] });
    await t.createCluster(CID);
    await createNamespace(k.env, NS);

    // Sources the Pod can fetch: a bare repo served read-only by git daemon on the node's address.
    repo = bareRepo(dir, 'src');
    repo.commit({ ...CHART, 'modules/basic/main.tf': MODULE, 'modules/slow/main.tf': SLOW_MODULE });
    gitServer = await serveGit(dir, k.nodeIp);
    gitUrl = `http://${k.nodeIp}:${(gitServer.address() as AddressInfo).port}/src.git`;

    const port = Number(new URL(t.url).port);
    valuesFile = join(dir, 'values.yaml');
    writeFileSync(
      valuesFile,
      JSON.stringify({
        image: { repository: image.ref.split(':')[0], tag: image.ref.split(':')[1], pullPolicy: 'Never' },
        controlPlane: { url: `https://${k.nodeIp}:${port}`, caCert: t.caPem },
        bootstrapToken: await t.bootstrapToken(CID, 'cluster-agent'),
        agent: { heartbeatIntervalMs: 2000, shutdownGraceSeconds: 30, logLevel: 'debug' },
      }),
    );
  });

  after(async function () {
    if (process.env['TETHER_KUBELET_VERBOSE'] === '1' && k) console.error(k.logs());
    gitServer?.close();
    await t?.close();
    await k?.stop();
    if (dir) removeDir(dir);
  });

  let firstPod: PodView;

  it('helm install: the Pod starts with its ServiceAccount, bootstraps, stores its identity and turns healthy', async () => {
    await helm(['install', RELEASE, join(REPO_ROOT, 'charts/cluster-agent'), '-n', NS, '-f', valuesFile]);
    firstPod = await readyPod().catch(async (err: Error) => {
      const pods = await agentPods();
      throw new Error(`${err.message}\npods: ${JSON.stringify(pods.map((p) => p.status))}\n${pods[0] ? await podLogs(pods[0].metadata.name) : ''}\n${k.logs()}`);
    });
    assert.equal(firstPod.spec.serviceAccountName, `${RELEASE}-cluster-agent`); // the chart's ServiceAccount, not default
    const id = await eventually(() => secretData(k.env, NS, 'tether-agent-identity'), 60_000, 'the identity Secret').catch(async (err: Error) => {
      throw new Error(`${err.message}\npod logs:\n${await podLogs(firstPod.metadata.name)}`);
    });
    assert.match(id['tls.crt']!, /BEGIN CERTIFICATE/);
    const list = await eventually(async () => {
      const a = await agents();
      return a.length === 1 && a[0]!.lastHeartbeatAt ? a : undefined;
    }, 60_000, 'a heartbeat');
    assert.equal(list[0]!.id, id['agent-id']);
    assert.match(await podLogs(firstPod.metadata.name), /bootstrapped; identity stored/);
  });

  it('runs a manifest, a helm and a tofu command', async () => {
    await createNamespace(k.env, 'pod-made');
    await runJob(t, CID, 'manifest', { manifests: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-pod}\ndata: {colour: blue}\n', namespace: 'pod-made' }, 120_000);
    assert.deepEqual((await kubeGet<{ data: Record<string, string> }>(k.env, '/api/v1/namespaces/pod-made/configmaps/from-pod'))?.data, { colour: 'blue' });

    const h = await runJob(t, CID, 'helm', { release: 'hello', namespace: 'pod-made', chart: { git: { url: gitUrl, ref: 'main', path: 'charts/hello' } }, values: { greeting: 'from-pod' } }, 180_000);
    assert.equal(h.outputs?.status, 'deployed');
    assert.equal((await kubeGet<{ data: Record<string, string> }>(k.env, '/api/v1/namespaces/pod-made/configmaps/hello-config'))?.data.greeting, 'from-pod');

    const tf = await runJob(t, CID, 'tofu', { source: { git: { url: gitUrl, ref: 'main', path: 'modules/basic' } }, stateName: 'basic' }, 240_000);
    assert.deepEqual(tf.outputs?.outputs, { greeting: 'hello-from-pod' });
    assert.ok(await kubeGet(k.env, `/api/v1/namespaces/${NS}/secrets/tfstate-default-basic`), 'state in a Secret, written with the Pod\'s ServiceAccount');
  });

  it('reports the Pod\'s idle RSS and CPU (seeds\' budget: ~128 MB / 100m)', async () => {
    const pod = (await readyPod())!;
    const uid = pod.metadata.uid.replace(/-/g, '_');
    const find = (root: string): string | undefined => {
      for (const qos of ['', 'burstable', 'besteffort']) {
        const base = join(root, 'kubepods', qos);
        if (!existsSync(base)) continue;
        const d = readdirSync(base).find((n) => n === `pod${pod.metadata.uid}` || n === `pod${uid}`);
        if (d) return join(base, d);
      }
      return undefined;
    };
    const mem = find('/sys/fs/cgroup/memory');
    const cpu = find('/sys/fs/cgroup/cpuacct');
    assert.ok(mem && cpu, 'the Pod\'s cgroups exist');
    await new Promise((r) => setTimeout(r, 15_000)); // let start-up settle
    const usage = () => Number(readFileSync(join(cpu, 'cpuacct.usage'), 'utf8'));
    const u0 = usage();
    const t0 = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, 30_000));
    const millicores = ((usage() - u0) / Number(process.hrtime.bigint() - t0)) * 1000;
    const stat = Object.fromEntries(readFileSync(join(mem, 'memory.stat'), 'utf8').trim().split('\n').map((l) => l.split(' ') as [string, string]));
    const rssMiB = Number(stat['total_rss']) / 2 ** 20;
    console.log(`      agent Pod at idle: RSS ${rssMiB.toFixed(1)} MiB, CPU ${millicores.toFixed(1)}m (budget ~128 MB / 100m)`);
    assert.ok(rssMiB > 10, 'measured a running Node process');
  });

  it('a deleted Pod is replaced and the new Pod reuses the identity without a token', async () => {
    const before = (await agents()).map((a) => a.id);
    await k.kubectl(['delete', 'pod', '-n', NS, firstPod.metadata.name, '--wait=false']);
    const next = await readyPod(firstPod.metadata.uid);
    const logs = await podLogs(next.metadata.name);
    assert.doesNotMatch(logs, /bootstrapped; identity stored/);
    assert.deepEqual((await agents()).map((a) => a.id), before, 'the same agent, no new bootstrap');
    await eventually(async () => {
      const a = await agents();
      return a[0]?.lastHeartbeatAt && Date.parse(a[0].lastHeartbeatAt) > Date.now() - 10_000;
    }, 60_000, 'heartbeats from the new Pod');
  });

  it('helm upgrade during a running command leaves that command in exactly one terminal state', async () => {
    const id = await submit(t, CID, 'tofu', { source: { git: { url: gitUrl, ref: 'main', path: 'modules/slow' } }, stateName: 'slow' });
    await eventually(async () => (await job(t, id)).state === 'running', 120_000, 'the slow command running');
    const pod = (await readyPod())!;
    await helm(['upgrade', RELEASE, join(REPO_ROOT, 'charts/cluster-agent'), '-n', NS, '-f', valuesFile, '--set', 'agent.logLevel=info']);
    const v: CommandView = await waitForJob(t, id, 240_000);
    assert.ok(isTerminal(v.state), `terminal: ${v.state}`);
    console.log(`      the command running across helm upgrade ended ${v.state} after ${v.attempts} attempt(s)`);
    await readyPod(pod.metadata.uid);
    // Settled once: it stays in that state while the new Pod polls.
    await new Promise((r) => setTimeout(r, 10_000));
    const again = await job(t, id);
    assert.equal(again.state, v.state);
    assert.equal(again.finishedAt, v.finishedAt);
  });

  it('helm uninstall leaves none of the release\'s objects behind', async () => {
    await helm(['uninstall', RELEASE, '-n', NS, '--wait']);
    await eventually(async () => (await agentPods()).length === 0, 120_000, 'the agent Pods gone');
    const sel = encodeURIComponent(`app.kubernetes.io/instance=${RELEASE}`);
    const left: string[] = [];
    for (const path of [
      `/apis/apps/v1/namespaces/${NS}/deployments`,
      `/api/v1/namespaces/${NS}/serviceaccounts`,
      `/api/v1/namespaces/${NS}/configmaps`,
      `/api/v1/namespaces/${NS}/secrets`,
      '/apis/rbac.authorization.k8s.io/v1/clusterroles',
      '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings',
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles`,
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`,
    ]) {
      const items = (await kubeGet<{ items: { metadata: { name: string } }[] }>(k.env, `${path}?labelSelector=${sel}`))?.items ?? [];
      left.push(...items.map((i) => `${path}/${i.metadata.name}`));
    }
    assert.deepEqual(left, []);
    // The agent creates its identity Secret at run time, owned by the chart's CA ConfigMap: the
    // garbage collector (kube-controller-manager) deletes it once uninstall deleted the ConfigMap.
    await eventually(async () => (await kubeGet(k.env, `/api/v1/namespaces/${NS}/secrets/tether-agent-identity`)) === undefined, 120_000, 'the identity Secret deleted with its owner');
  });
});
