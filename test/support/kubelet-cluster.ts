// A real single-node Kubernetes for tests: envtest's etcd + kube-apiserver (reachable from Pods:
// bound to all addresses, advertised on the node's IP), plus kube-controller-manager,
// kube-scheduler, kube-proxy and a kubelet from the pinned toolchain, running Pods with containerd,
// runc and the CNI plugins from Debian's packages. Images are imported into containerd from the
// docker-archives scripts/images.sh writes (the pause image included: nothing is pulled).
//
//   const why = kubeletClusterUnavailable(); if (why) this.skip();
//   const k = await startKubeletCluster({ images: [archive, ...] });
//   ... k.env (an Envtest: kubeconfig, kubeRequest), k.nodeIp, k.kubectl([...]) ...
//   await k.stop();
//
// Everything lives in one temp dir (containerd root and socket, kubelet root, CNI config); stop()
// kills what it started by pid, removes Pods' containers and mounts, the CNI bridge, kube-proxy's
// iptables rules and the kubelet's cgroups, and puts back the sysctls the kubelet and kube-proxy set.
// Set TETHER_KUBELET_VERBOSE=1 to see the components' logs; TETHER_KUBELET_RUNC=<path> runs another
// runc (e.g. a wrapper keeping each bundle's config.json, as docs/kubernetes-lab.md describes).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startEnvtest, type Envtest } from './envtest.ts';
import { eventually, freePort } from './control-plane.ts';
import { cacheRoot, toolPath } from './toolchain.ts';

const execFileP = promisify(execFile);

export const NODE_NAME = 'tether-node';
/** Pod addresses (the CNI bridge's subnet); the bridge's own address is .1. */
export const POD_CIDR = '10.244.0.0/24';
export const POD_GATEWAY = '10.244.0.1';
const BRIDGE = 'tether-cni0';
const CNI_BIN = '/usr/lib/cni';
const HOST_BINS = ['containerd', 'containerd-shim-runc-v2', 'ctr', 'runc', 'iptables'];
/**
 * Host-wide settings the kubelet (protectKernelDefaults=false) and kube-proxy change; saved before
 * the start and put back by stop(), as this machine is shared.
 */
const SYSCTLS = [
  'vm/overcommit_memory', 'vm/panic_on_oom', 'kernel/panic', 'kernel/panic_on_oops', 'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes', 'net/ipv4/conf/all/route_localnet',
];
function readSysctls(): Map<string, string> {
  const m = new Map<string, string>();
  for (const k of SYSCTLS) {
    try {
      m.set(k, readFileSync(join('/proc/sys', k), 'utf8').trim());
    } catch {
      // not in this kernel
    }
  }
  return m;
}
function restoreSysctls(saved: Map<string, string>): void {
  for (const [k, v] of saved) {
    try {
      writeFileSync(join('/proc/sys', k), v);
    } catch {
      // read-only here
    }
  }
}
/** The cgroup v1 controllers the kubelet's cgroup manager needs. */
const CGROUP_V1_CONTROLLERS = ['cpu', 'cpuacct', 'cpuset', 'memory', 'pids', 'hugetlb'];

export interface KubeletCluster {
  env: Envtest;
  nodeIp: string;
  nodeName: string;
  tempDir: string;
  containerdSocket: string;
  /** kubectl with the admin kubeconfig. */
  kubectl(args: string[], input?: string): Promise<string>;
  /** Output of every component so far (last lines of each). */
  logs(): string;
  /** A container's log as the kubelet keeps it (all restarts), read from the node's disk. */
  containerLog(namespace: string, pod: string, container: string): string;
  stop(): Promise<void>;
}

function onPath(bin: string): boolean {
  return (process.env['PATH'] ?? '').split(':').some((d) => d && existsSync(join(d, bin)));
}

/** Why a kubelet cluster cannot run here, or undefined when it can. */
export function kubeletClusterUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'the kubelet, containerd and CNI need root';
  const missing = HOST_BINS.filter((b) => !onPath(b));
  if (missing.length) return `missing host binaries: ${missing.join(', ')} (apt-get install containerd runc iptables)`;
  if (!existsSync(join(CNI_BIN, 'bridge'))) return `no CNI plugins in ${CNI_BIN} (apt-get install containernetworking-plugins)`;
  return undefined;
}

/** The node's first global IPv4 address (Pods reach the apiserver and the control plane there). */
export function nodeAddress(): string {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (name === 'lo' || name.startsWith(BRIDGE)) continue;
    const a = (addrs ?? []).find((x) => x.family === 'IPv4' && !x.internal);
    if (a) return a.address;
  }
  throw new Error('no non-loopback IPv4 address on this machine');
}

/** cgroup v1 hierarchies the kubelet needs but the host did not mount (e.g. hugetlb): mounted here. */
async function ensureCgroupControllers(): Promise<string[]> {
  if (!existsSync('/sys/fs/cgroup/memory')) return []; // cgroup v2 (unified): nothing to do
  const enabled = new Set(
    readFileSync('/proc/cgroups', 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split('\t'))
      .filter((f) => f[3] === '1')
      .map((f) => f[0]!),
  );
  const mounted: string[] = [];
  for (const c of CGROUP_V1_CONTROLLERS) {
    if (!enabled.has(c) || existsSync(join('/sys/fs/cgroup', c, 'cgroup.procs'))) continue;
    await mkdir(join('/sys/fs/cgroup', c), { recursive: true });
    await execFileP('mount', ['-t', 'cgroup', '-o', c, 'cgroup', join('/sys/fs/cgroup', c)]);
    mounted.push(c);
  }
  return mounted;
}

class Tail {
  private s = '';
  push(d: Buffer): void {
    this.s += d.toString('utf8');
    if (this.s.length > 256 * 1024) this.s = this.s.slice(-128 * 1024);
  }
  last(n = 30): string {
    return this.s.split('\n').slice(-n - 1).join('\n');
  }
}

interface Proc {
  name: string;
  child: ChildProcess;
  tail: Tail;
  exited: Promise<void>;
}

function startProc(name: string, bin: string, args: string[], verbose: boolean): Proc {
  const child = spawn(bin, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const tail = new Tail();
  const on = (d: Buffer) => {
    tail.push(d);
    if (verbose) process.stderr.write(d.toString('utf8').replace(/^(?=.)/gm, `[${name}] `));
  };
  child.stdout!.on('data', on);
  child.stderr!.on('data', on);
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  return { name, child, tail, exited };
}

async function stopProc(p: Proc, graceMs = 10_000): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null || p.child.pid === undefined) return;
  const pid = p.child.pid;
  try {
    process.kill(-pid, 'SIGTERM');
  } catch {
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.exited, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
  clearTimeout(timer);
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // gone
  }
  await p.exited;
}

/** Pids whose command line mentions `marker` (the shims of our containerd name its socket). */
function pidsMentioning(marker: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(marker)) out.push(Number(e));
    } catch {
      // exited
    }
  }
  return out;
}

/** Removes a cgroup v1 subtree bottom-up (only empty cgroups can go). */
function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    try {
      if (statSync(p).isDirectory()) removeCgroupTree(p);
    } catch {
      // raced
    }
  }
  try {
    rmdirSync(dir);
  } catch {
    // still busy: left for the next run's start to report
  }
}

function containerdConfig(dir: string): string {
  return `version = 2
root = "${dir}/containerd/root"
state = "${dir}/containerd/state"
[grpc]
  address = "${dir}/containerd/containerd.sock"
[ttrpc]
  address = "${dir}/containerd/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10.1"
  enable_selinux = false
  # This machine's processes lack CAP_SYS_RESOURCE (CapBnd 000001fffeffffff: bit 24 cleared), so
  # no oom_score_adj below 0 can be written: the kubelet asks -998 for every sandbox and runc fails
  # with "can't get final child's PID from pipe: EOF". Containerd's knob for such hosts (rootless,
  # nested) clamps the value to containerd's own (docs/kubernetes-lab.md).
  restrict_oom_score_adj = ${process.env['TETHER_KUBELET_UNRESTRICTED_OOM'] === '1' ? 'false' : 'true'}
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "${process.env['TETHER_KUBELET_RUNC'] ?? 'runc'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${CNI_BIN}"
    conf_dir = "${dir}/cni/net.d"
`;
}

function cniConfig(): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: 'tether-test',
    plugins: [
      {
        type: 'bridge',
        bridge: BRIDGE,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: POD_CIDR, gateway: POD_GATEWAY }]], routes: [{ dst: '0.0.0.0/0' }] },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  });
}

function kubeletConfig(dir: string, caFile: string, port: number, healthzPort: number): string {
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 0.0.0.0
port: ${port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${healthzPort}
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "${caFile}"}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: "unix://${dir}/containerd/containerd.sock"
resolvConf: /etc/resolv.conf
podLogsDir: "${dir}/pod-logs"
volumePluginDir: "${dir}/volume-plugins"
clusterDomain: cluster.local
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
fileCheckFrequency: 5s
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
`;
}

/**
 * One kubelet cluster per machine at a time (they would share the CNI bridge, kube-proxy's
 * iptables chains and /kubepods cgroups): a lock directory holding the owner's pid, taken over
 * when that process is gone.
 */
async function lockMachine(timeoutMs: number): Promise<() => void> {
  const dir = join(cacheRoot(), 'locks');
  mkdirSync(dir, { recursive: true });
  const lock = join(dir, 'kubelet-cluster.lock');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      return () => rmSync(lock, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner = NaN;
    try {
      owner = Number(readFileSync(join(lock, 'pid'), 'utf8'));
    } catch {
      // being created or removed
    }
    let alive = true;
    if (Number.isInteger(owner)) {
      try {
        process.kill(owner, 0);
      } catch {
        alive = false;
      }
    }
    if (!alive) rmSync(lock, { recursive: true, force: true });
    else if (Date.now() > deadline) throw new Error(`another kubelet cluster (pid ${owner}) holds ${lock}`);
    else await new Promise((r) => setTimeout(r, 1000));
  }
}

export interface KubeletClusterOptions {
  /** docker-archives to import into containerd's k8s.io namespace (pause is required). */
  images: string[];
  verbose?: boolean;
  startTimeoutMs?: number;
}

export async function startKubeletCluster(opts: KubeletClusterOptions): Promise<KubeletCluster> {
  const verbose = opts.verbose ?? process.env['TETHER_KUBELET_VERBOSE'] === '1';
  const timeout = opts.startTimeoutMs ?? 180_000;
  const nodeIp = nodeAddress();
  const unlock = await lockMachine(20 * 60_000);
  const dir = await mkdtemp(join(tmpdir(), 'tether-kubelet-'));
  const procs: Proc[] = [];
  const sock = join(dir, 'containerd', 'containerd.sock');
  let env: Envtest | undefined;
  let stopped = false;
  const sysctls = readSysctls();
  const logs = () => procs.map((p) => `--- ${p.name} (exit ${p.child.exitCode ?? p.child.signalCode ?? 'running'})\n${p.tail.last()}`).join('\n');
  const kubectl = async (args: string[], input?: string): Promise<string> => {
    const child = execFile(toolPath('kubectl'), ['--kubeconfig', env!.kubeconfigPath, ...args], { maxBuffer: 16 << 20 });
    if (input !== undefined) child.stdin!.end(input);
    return await new Promise<string>((resolve, reject) => {
      let out = '';
      let err = '';
      child.stdout!.on('data', (d) => (out += d));
      child.stderr!.on('data', (d) => (err += d));
      child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`kubectl ${args.join(' ')}: exit ${code}: ${err}`))));
    });
  };
  const ctr = (args: string[]) => execFileP('ctr', ['--address', sock, '--namespace', 'k8s.io', ...args], { maxBuffer: 16 << 20 });

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const kubelet = procs.find((p) => p.name === 'kubelet');
    if (kubelet) await stopProc(kubelet);
    // Pods' containers outlive the kubelet (their shims belong to containerd): kill and remove them.
    if (existsSync(sock)) {
      const tasks = (await ctr(['tasks', 'ls', '-q']).catch(() => ({ stdout: '' }))).stdout.split('\n').filter(Boolean);
      for (const t of tasks) await ctr(['tasks', 'kill', '-s', 'SIGKILL', t]).catch(() => undefined);
      for (const t of tasks) await eventually(async () => (await ctr(['tasks', 'delete', t]).then(() => true, () => false)) || undefined, 10_000).catch(() => undefined);
      const cs = (await ctr(['containers', 'ls', '-q']).catch(() => ({ stdout: '' }))).stdout.split('\n').filter(Boolean);
      for (const c of cs) await ctr(['containers', 'delete', c]).catch(() => undefined);
    }
    for (const p of [...procs].reverse()) await stopProc(p);
    for (const pid of pidsMentioning(join(dir, 'containerd'))) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await execFileP(toolPath('kube-proxy'), ['--cleanup']).catch(() => undefined);
    restoreSysctls(sysctls);
    await execFileP('ip', ['link', 'delete', BRIDGE]).catch(() => undefined);
    // Mounts under the temp dir (pod volumes, sandboxes' shm, overlay snapshots), deepest first.
    const mounts = readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[1] ?? '')
      .filter((m) => m.startsWith(dir))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) await execFileP('umount', ['-l', m]).catch(() => undefined);
    for (const c of CGROUP_V1_CONTROLLERS.concat(['devices', 'freezer', 'blkio', 'systemd'])) removeCgroupTree(join('/sys/fs/cgroup', c, 'kubepods'));
    await env?.stop();
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    unlock();
  };

  try {
    await ensureCgroupControllers();
    const [kubeletPort, kubeletHealthz, kcmPort, schedPort, proxyHealthz, proxyMetrics] = (await Promise.all(Array.from({ length: 6 }, () => freePort()))) as [number, number, number, number, number, number];
    env = await startEnvtest({
      apiserverArgs: ['--bind-address=0.0.0.0', `--advertise-address=${nodeIp}`],
      serviceAccountAdmission: true, // Pods get ServiceAccount token volumes
    });
    const pki = env.tempDir;
    const caFile = join(pki, 'ca.crt');
    await mkdir(join(dir, 'containerd'), { recursive: true });
    await mkdir(join(dir, 'cni', 'net.d'), { recursive: true });
    await writeFile(join(dir, 'containerd.toml'), containerdConfig(dir));
    await writeFile(join(dir, 'cni', 'net.d', '10-tether.conflist'), cniConfig());
    await writeFile(join(dir, 'kubelet.yaml'), kubeletConfig(dir, caFile, kubeletPort, kubeletHealthz));

    const containerd = startProc('containerd', 'containerd', ['--config', join(dir, 'containerd.toml')], verbose);
    procs.push(containerd);
    await eventually(async () => {
      if (containerd.child.exitCode !== null) throw new Error(`containerd exited:\n${containerd.tail.last()}`);
      return (await ctr(['version']).then(() => true, () => false)) || undefined;
    }, 30_000, 'containerd');
    for (const archive of opts.images) await ctr(['images', 'import', '--no-unpack=false', archive]);

    const kubeconfig = env.kubeconfigPath;
    procs.push(
      startProc('kube-controller-manager', toolPath('kube-controller-manager'), [
        `--kubeconfig=${kubeconfig}`,
        '--leader-elect=false',
        `--root-ca-file=${caFile}`,
        `--service-account-private-key-file=${join(pki, 'sa.key')}`,
        '--use-service-account-credentials=false',
        '--controllers=*,-nodeipam',
        '--bind-address=127.0.0.1',
        `--secure-port=${kcmPort}`,
        '--v=1',
      ], verbose),
      startProc('kube-scheduler', toolPath('kube-scheduler'), [
        `--kubeconfig=${kubeconfig}`,
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        `--secure-port=${schedPort}`,
        '--v=1',
      ], verbose),
      startProc('kube-proxy', toolPath('kube-proxy'), [
        `--kubeconfig=${kubeconfig}`,
        `--hostname-override=${NODE_NAME}`,
        '--proxy-mode=iptables',
        `--cluster-cidr=${POD_CIDR}`,
        '--conntrack-max-per-core=0',
        `--healthz-bind-address=127.0.0.1:${proxyHealthz}`,
        `--metrics-bind-address=127.0.0.1:${proxyMetrics}`,
        '--v=1',
      ], verbose),
      startProc('kubelet', toolPath('kubelet'), [
        `--config=${join(dir, 'kubelet.yaml')}`,
        `--kubeconfig=${kubeconfig}`,
        `--root-dir=${join(dir, 'kubelet')}`,
        `--hostname-override=${NODE_NAME}`,
        `--node-ip=${nodeIp}`,
        '--v=1',
      ], verbose),
    );
    await eventually(async () => {
      const dead = procs.find((p) => p.child.exitCode !== null);
      if (dead) throw new Error(`${dead.name} exited:\n${dead.tail.last(60)}`);
      const out = await kubectl(['get', 'node', NODE_NAME, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']).catch(() => '');
      return out === 'True' || undefined;
    }, timeout, 'the node to be Ready');
    const containerLog = (namespace: string, pod: string, container: string): string => {
      const root = join(dir, 'pod-logs');
      const podDir = readdirSync(root).find((d) => d.startsWith(`${namespace}_${pod}_`));
      if (!podDir || !existsSync(join(root, podDir, container))) return '';
      const files = readdirSync(join(root, podDir, container)).sort((a, b) => parseInt(a) - parseInt(b));
      // CRI log lines: <time> <stream> <F|P> <text>
      return files
        .map((f) => readFileSync(join(root, podDir, container, f), 'utf8').replace(/^\S+ (?:stdout|stderr) [FP] /gm, ''))
        .join('');
    };
    return { env, nodeIp, nodeName: NODE_NAME, tempDir: dir, containerdSocket: sock, kubectl, logs, containerLog, stop };
  } catch (err) {
    const text = `${(err as Error).message}\n${logs()}`;
    await stop().catch(() => undefined);
    throw new Error(text);
  }
}
