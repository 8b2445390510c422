/**
 * The install plan: an ordered list of steps (kernel modules, sysctls, container runtime,
 * Kubernetes components, join), each made of actions that are already decided "needed" or
 * "already done" from the facts gathered just before. Pure: `--dry-run` prints this, a normal run
 * executes the needed actions, and a second run finds nothing to do.
 */
import { join as joinPath } from 'node:path';

export interface InstallFacts {
  /** Current content of each file the plan may write (keyed by its path under the root); null = absent. */
  files: Record<string, string | null>;
  /** Kernel modules active now (loaded or built in). */
  modulesActive: Record<string, boolean>;
  /** Kernel modules that exist at all (active or loadable). */
  modulesAvailable: Record<string, boolean>;
  /** Current sysctl values; null = the key does not exist yet (its module is not loaded). */
  sysctls: Record<string, string | null>;
  binaries: Record<string, boolean>;
  packageManager: 'apt' | 'dnf' | null;
  /** `systemctl is-enabled <unit>` said enabled (null: systemd cannot answer). */
  servicesEnabled: Record<string, boolean | null>;
  /** /etc/kubernetes/kubelet.conf exists: this node is part of a cluster already. */
  joined: boolean;
}

export interface JoinParameters {
  apiServerEndpoint: string;
  token: string;
  caCertHash: string;
  /** For additional control-plane nodes (kubeadm --certificate-key). */
  certificateKey?: string;
}

export interface InstallOptions {
  root: string;
  nodeName: string;
  controlPlaneNode: boolean;
  /** Minor release line of the Kubernetes package repository, e.g. v1.33. */
  kubernetesVersion: string;
  /** Address the kubelet advertises (the node's wg0 address), when known. */
  nodeIp?: string;
  join?: JoinParameters;
}

export type Action =
  | { kind: 'write-file'; path: string; content: string; mode: number; secret?: boolean }
  /** A host command (package manager, kubeadm, modprobe, …): only ever executed when the root is /. */
  | { kind: 'run'; argv: string[] }
  | { kind: 'blocked'; message: string };

export interface PlannedAction {
  action: Action;
  needed: boolean;
  /** Why it is (not) needed: the check made before changing anything. */
  reason: string;
}

export interface Step {
  id: 'kernel-modules' | 'sysctls' | 'container-runtime' | 'kubernetes' | 'join';
  title: string;
  actions: PlannedAction[];
}

export const MODULES_LOAD_FILE = '/etc/modules-load.d/tether.conf';
export const SYSCTL_FILE = '/etc/sysctl.d/99-tether-kubernetes.conf';
export const CONTAINERD_CONFIG = '/etc/containerd/config.toml';
export const KUBEADM_CONFIG = '/etc/tether/kubeadm.yaml';
export const APT_KEYRING = '/etc/apt/keyrings/kubernetes-apt-keyring.asc';
export const APT_SOURCE = '/etc/apt/sources.list.d/kubernetes.list';
export const DNF_REPO = '/etc/yum.repos.d/kubernetes.repo';
export const KUBE_PACKAGES = ['kubelet', 'kubeadm', 'kubectl'];

export const SYSCTLS: Record<string, string> = {
  'net.ipv4.ip_forward': '1',
  'net.bridge.bridge-nf-call-iptables': '1',
  'net.bridge.bridge-nf-call-ip6tables': '1',
};

/** Every file path the plan may write, so the facts layer knows what to read. */
export const PLAN_FILES = [MODULES_LOAD_FILE, SYSCTL_FILE, CONTAINERD_CONFIG, KUBEADM_CONFIG, APT_KEYRING, APT_SOURCE, DNF_REPO];

const file = (f: InstallFacts, path: string, content: string, mode = 0o644, secret = false): PlannedAction => {
  const current = f.files[path] ?? null;
  const action: Action = { kind: 'write-file', path, content, mode, ...(secret ? { secret } : {}) };
  if (current === content) return { action, needed: false, reason: 'up to date' };
  return { action, needed: true, reason: current === null ? 'absent' : 'content differs' };
};
const run = (argv: string[], needed: boolean, reason: string): PlannedAction => ({ action: { kind: 'run', argv }, needed, reason });

export function planInstall(f: InstallFacts, o: InstallOptions): Step[] {
  const host = (p: string) => joinPath(o.root, p);
  const steps: Step[] = [];

  // 1. kernel modules
  const modules = ['overlay', 'br_netfilter', ...(f.modulesAvailable.wireguard ? ['wireguard'] : [])];
  steps.push({
    id: 'kernel-modules',
    title: `kernel modules (${modules.join(', ')})`,
    actions: [
      file(f, MODULES_LOAD_FILE, `# written by tether-node install\n${modules.join('\n')}\n`),
      ...modules.map((m) => run(['modprobe', m], !f.modulesActive[m], f.modulesActive[m] ? 'already active' : 'not active')),
    ],
  });

  // 2. sysctls
  const sysctlText = `# written by tether-node install\n${Object.entries(SYSCTLS).map(([k, v]) => `${k} = ${v}`).join('\n')}\n`;
  const sysctlFile = file(f, SYSCTL_FILE, sysctlText);
  const wrong = Object.entries(SYSCTLS).filter(([k, v]) => f.sysctls[k] !== v).map(([k]) => k);
  steps.push({
    id: 'sysctls',
    title: 'sysctls for Kubernetes networking',
    actions: [
      sysctlFile,
      run(['sysctl', '--system'], sysctlFile.needed || wrong.length > 0, wrong.length ? `not applied yet: ${wrong.join(', ')}` : sysctlFile.needed ? 'file changed' : 'values in effect'),
    ],
  });

  // 3. container runtime
  const pm = f.packageManager;
  const install = (pkgs: string[]): string[] => (pm === 'dnf' ? ['dnf', 'install', '-y', ...pkgs] : ['apt-get', 'install', '-y', '--no-install-recommends', ...pkgs]);
  const containerdConfig = file(f, CONTAINERD_CONFIG, containerdToml());
  steps.push({
    id: 'container-runtime',
    title: 'containerd (systemd cgroup driver)',
    actions: [
      pm === null && !f.binaries.containerd
        ? { action: { kind: 'blocked', message: 'no apt-get or dnf: install containerd by hand' }, needed: true, reason: 'containerd missing' }
        : run(install(['containerd']), !f.binaries.containerd, f.binaries.containerd ? 'containerd installed' : 'containerd missing'),
      containerdConfig,
      run(['systemctl', 'restart', 'containerd'], containerdConfig.needed, containerdConfig.needed ? 'configuration changed' : 'configuration unchanged'),
      run(['systemctl', 'enable', '--now', 'containerd'], f.servicesEnabled.containerd !== true, f.servicesEnabled.containerd ? 'enabled' : 'not enabled'),
    ],
  });

  // 4. Kubernetes components
  const missing = KUBE_PACKAGES.filter((p) => !f.binaries[p]);
  const kubeActions: PlannedAction[] = [];
  const repo = `https://pkgs.k8s.io/core:/stable:/${o.kubernetesVersion}`;
  if (pm === 'dnf') {
    const repoFile = file(f, DNF_REPO, `[kubernetes]\nname=Kubernetes\nbaseurl=${repo}/rpm/\nenabled=1\ngpgcheck=1\ngpgkey=${repo}/rpm/repodata/repomd.xml.key\nexclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n`);
    kubeActions.push(repoFile, run(['dnf', 'install', '-y', ...KUBE_PACKAGES, '--disableexcludes=kubernetes'], missing.length > 0, missing.length ? `missing: ${missing.join(', ')}` : 'installed'));
  } else if (pm === 'apt') {
    const hasKey = f.files[APT_KEYRING] !== null && f.files[APT_KEYRING] !== undefined;
    const source = file(f, APT_SOURCE, `deb [signed-by=${APT_KEYRING}] ${repo}/deb/ /\n`);
    kubeActions.push(
      run(['curl', '-fsSL', '--create-dirs', '-o', host(APT_KEYRING), `${repo}/deb/Release.key`], !hasKey, hasKey ? 'key present' : 'key absent'),
      source,
      run(['apt-get', 'update'], source.needed || missing.length > 0, source.needed ? 'repository added' : missing.length ? 'packages to install' : 'nothing to install'),
      run(install(KUBE_PACKAGES), missing.length > 0, missing.length ? `missing: ${missing.join(', ')}` : 'installed'),
      run(['apt-mark', 'hold', ...KUBE_PACKAGES], missing.length > 0, missing.length ? 'pin the freshly installed versions' : 'held at install'),
    );
  } else if (missing.length) {
    kubeActions.push({ action: { kind: 'blocked', message: `no apt-get or dnf: install ${missing.join(', ')} by hand` }, needed: true, reason: 'packages missing' });
  }
  kubeActions.push(run(['systemctl', 'enable', 'kubelet'], f.servicesEnabled.kubelet !== true, f.servicesEnabled.kubelet ? 'enabled' : 'not enabled'));
  steps.push({ id: 'kubernetes', title: `Kubernetes ${o.kubernetesVersion} (kubelet, kubeadm, kubectl)`, actions: kubeActions });

  // 5. join (or init, for the first control-plane node)
  const joinActions: PlannedAction[] = [];
  if (f.joined) {
    joinActions.push({ action: { kind: 'run', argv: ['kubeadm', o.join ? 'join' : 'init'] }, needed: false, reason: '/etc/kubernetes/kubelet.conf exists: already part of a cluster' });
  } else if (o.join) {
    joinActions.push(file(f, KUBEADM_CONFIG, kubeadmJoinYaml(o, o.join), 0o600, true), run(['kubeadm', 'join', '--config', host(KUBEADM_CONFIG)], true, 'not joined'));
  } else if (o.controlPlaneNode) {
    joinActions.push(file(f, KUBEADM_CONFIG, kubeadmInitYaml(o)), run(['kubeadm', 'init', '--config', host(KUBEADM_CONFIG)], true, 'no cluster yet: first control-plane node'));
  } else {
    joinActions.push({ action: { kind: 'blocked', message: 'a worker needs join parameters (--join-endpoint, --join-token, --ca-cert-hash)' }, needed: true, reason: 'not joined' });
  }
  steps.push({ id: 'join', title: o.join || !o.controlPlaneNode ? 'join the cluster (kubeadm join)' : 'create the cluster (kubeadm init)', actions: joinActions });
  return steps;
}

export function containerdToml(): string {
  return [
    '# written by tether-node install',
    'version = 2',
    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
    '  runtime_type = "io.containerd.runc.v2"',
    '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
    '    SystemdCgroup = true',
    '',
  ].join('\n');
}

function nodeRegistration(o: InstallOptions): string {
  return [
    'nodeRegistration:',
    `  name: ${o.nodeName}`,
    '  criSocket: unix:///run/containerd/containerd.sock',
    ...(o.nodeIp ? ['  kubeletExtraArgs:', '    - name: node-ip', `      value: ${o.nodeIp}`] : []),
  ].join('\n');
}

export function kubeadmInitYaml(o: InstallOptions): string {
  return [
    'apiVersion: kubeadm.k8s.io/v1beta4',
    'kind: InitConfiguration',
    ...(o.nodeIp ? ['localAPIEndpoint:', `  advertiseAddress: ${o.nodeIp}`] : []),
    nodeRegistration(o),
    '---',
    'apiVersion: kubeadm.k8s.io/v1beta4',
    'kind: ClusterConfiguration',
    `kubernetesVersion: stable-${o.kubernetesVersion.replace(/^v/, '')}`,
    '---',
    'apiVersion: kubelet.config.k8s.io/v1beta1',
    'kind: KubeletConfiguration',
    'cgroupDriver: systemd',
    '',
  ].join('\n');
}

export function kubeadmJoinYaml(o: InstallOptions, j: JoinParameters): string {
  return [
    'apiVersion: kubeadm.k8s.io/v1beta4',
    'kind: JoinConfiguration',
    'discovery:',
    '  bootstrapToken:',
    `    apiServerEndpoint: ${JSON.stringify(j.apiServerEndpoint)}`,
    `    token: ${JSON.stringify(j.token)}`,
    '    caCertHashes:',
    `      - ${JSON.stringify(j.caCertHash)}`,
    nodeRegistration(o),
    ...(o.controlPlaneNode ? ['controlPlane:', ...(j.certificateKey ? [`  certificateKey: ${JSON.stringify(j.certificateKey)}`] : []), ...(o.nodeIp ? ['  localAPIEndpoint:', `    advertiseAddress: ${o.nodeIp}`] : [])] : []),
    '',
  ].join('\n');
}

/** The plan as text (dry-run output and command logs). File contents marked secret are not shown. */
export function renderPlan(steps: Step[], o: { root: string; hostCommands: boolean }): string {
  const lines: string[] = [`install plan (root ${o.root}; host commands ${o.hostCommands ? 'executed' : 'not executed: dry-run'})`];
  steps.forEach((s, i) => {
    const todo = s.actions.filter((a) => a.needed).length;
    lines.push(`${i + 1}. ${s.title}: ${todo ? `${todo} change${todo > 1 ? 's' : ''}` : 'done'}`);
    for (const a of s.actions) {
      const mark = a.needed ? (a.action.kind === 'blocked' ? '!' : '+') : '=';
      lines.push(`   ${mark} ${describeAction(a.action, o.root)} (${a.reason})`);
    }
  });
  return `${lines.join('\n')}\n`;
}

export function describeAction(a: Action, root: string): string {
  switch (a.kind) {
    case 'write-file':
      return `write ${joinPath(root, a.path)} (mode ${a.mode.toString(8)})`;
    case 'run':
      return `run ${a.argv.join(' ')}`;
    case 'blocked':
      return `blocked: ${a.message}`;
  }
}
