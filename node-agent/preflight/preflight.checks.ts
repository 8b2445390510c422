/**
 * Preflight decisions: pure functions from gathered host facts to a report. Nothing here touches
 * the host, so every threshold is unit-tested with made-up facts.
 */

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
}

export interface PreflightReport {
  checks: Check[];
  summary: { pass: number; warn: number; fail: number; ok: boolean };
}

export interface PortFact {
  proto: 'tcp' | 'udp';
  port: number;
  purpose: string;
  free: boolean;
  /** Why it is not free (EADDRINUSE, EACCES, …). */
  error?: string;
  /** Held by our own WireGuard interface (the port is then as good as free). */
  ownInterface?: string;
}

export type CgroupMode = 'unified' | 'hybrid' | 'legacy' | 'none';

export interface ModuleFacts {
  /** Names in /proc/modules; null when the file does not exist (a kernel without module support). */
  loaded: string[] | null;
  /** Names in /lib/modules/$(uname -r)/modules.builtin; null when unreadable. */
  builtin: string[] | null;
  /** Names loadable from /lib/modules/$(uname -r)/modules.dep; null when unreadable. */
  loadable: string[] | null;
  /** Names under /sys/module (loaded or built in, when they have parameters). */
  sysModule: string[];
  /** /proc/sys/net/bridge exists: br_netfilter is active whatever the module tables say. */
  bridgeNetfilterSysctl: boolean;
}

export interface HostFacts {
  os: { id?: string; idLike?: string; versionId?: string; prettyName?: string } | null;
  kernelRelease: string;
  arch: string;
  cgroup: { mode: CgroupMode; detail: string };
  /** Active swap devices from /proc/swaps; null when unreadable. */
  swapDevices: string[] | null;
  modules: ModuleFacts;
  /** Resolved paths of tools, null when absent. */
  binaries: Record<string, string | null>;
  ports: PortFact[];
  disk: { path: string; freeBytes: number; totalBytes: number } | null;
  memoryTotalBytes: number;
  cpus: number;
  timeSync: {
    /** timedatectl NTPSynchronized (null when timedatectl cannot answer). */
    ntpSynchronized: boolean | null;
    /** chronyc tracking: "Leap status : Normal" and the offset in seconds. */
    chrony: { synced: boolean; offsetSeconds: number | null } | null;
    /** Time daemons seen running (chronyd, ntpd, systemd-timesyncd, …). */
    daemons: string[];
    /** `Date` of the control plane minus local time, when it was reached. */
    controlPlaneSkewMs: number | null;
  };
  controlPlane: { url: string; reachable: boolean; detail: string } | null;
}

export interface PreflightOptions {
  controlPlaneNode: boolean;
}

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;

export const THRESHOLDS = {
  kernelMin: [4, 19] as const,
  kernelRecommended: [5, 4] as const,
  diskFailBelow: 10 * GiB,
  diskWarnBelow: 20 * GiB,
  /** kubeadm's own minimums: 1700 MB for control-plane nodes, and 2 CPUs. */
  memoryFailBelow: { controlPlane: 1700 * 1000 ** 2, worker: 1 * GiB },
  memoryWarnBelow: { controlPlane: 4 * GiB, worker: 2 * GiB },
  cpusFailBelow: { controlPlane: 2, worker: 1 },
  skewWarnMs: 2_000,
  skewFailMs: 60_000,
} as const;

export const SUPPORTED_OS = ['debian', 'ubuntu', 'rhel', 'centos', 'rocky', 'almalinux', 'fedora', 'opensuse-leap', 'sles', 'amzn'];
export const REQUIRED_MODULES = ['overlay', 'br_netfilter', 'wireguard'] as const;

/** The ports a node needs free: Kubernetes' and the two WireGuard listen ports. */
export function requiredPorts(controlPlaneNode: boolean, wg: { wg0: number; wg1: number }): Omit<PortFact, 'free'>[] {
  const ports: Omit<PortFact, 'free'>[] = [{ proto: 'tcp', port: 10250, purpose: 'kubelet API' }];
  if (controlPlaneNode) {
    ports.unshift({ proto: 'tcp', port: 6443, purpose: 'Kubernetes API server' });
    ports.push(
      { proto: 'tcp', port: 2379, purpose: 'etcd client' },
      { proto: 'tcp', port: 2380, purpose: 'etcd peer' },
      { proto: 'tcp', port: 10257, purpose: 'kube-controller-manager' },
      { proto: 'tcp', port: 10259, purpose: 'kube-scheduler' },
    );
  }
  ports.push({ proto: 'udp', port: wg.wg0, purpose: 'WireGuard wg0 (node mesh)' }, { proto: 'udp', port: wg.wg1, purpose: 'WireGuard wg1 (user access)' });
  return ports;
}

export function evaluate(f: HostFacts, o: PreflightOptions): PreflightReport {
  const checks: Check[] = [
    checkOs(f),
    checkKernel(f.kernelRelease),
    checkArch(f.arch),
    checkCgroup(f.cgroup),
    checkSwap(f.swapDevices),
    ...REQUIRED_MODULES.map((m) => checkModule(m, f.modules, f.binaries)),
    ...f.ports.map(checkPort),
    checkDisk(f.disk),
    checkMemory(f.memoryTotalBytes, o.controlPlaneNode),
    checkCpus(f.cpus, o.controlPlaneNode),
    checkTimeSync(f.timeSync),
    checkControlPlane(f.controlPlane),
  ];
  return { checks, summary: summarise(checks) };
}

export function summarise(checks: Check[]): PreflightReport['summary'] {
  const n = (s: CheckStatus) => checks.filter((c) => c.status === s).length;
  return { pass: n('pass'), warn: n('warn'), fail: n('fail'), ok: n('fail') === 0 };
}

/** Exit code of `tether-node preflight`: 0 when nothing failed (warnings included), else 1. */
export const exitCodeFor = (r: PreflightReport): number => (r.summary.ok ? 0 : 1);

export function checkOs(f: Pick<HostFacts, 'os'>): Check {
  const name = 'os';
  if (!f.os) return { name, status: 'warn', detail: '/etc/os-release is missing: cannot tell the distribution' };
  const label = f.os.prettyName ?? `${f.os.id ?? '?'} ${f.os.versionId ?? ''}`.trim();
  const family = [f.os.id ?? '', ...(f.os.idLike ?? '').split(/\s+/)];
  if (family.some((id) => SUPPORTED_OS.includes(id))) return { name, status: 'pass', detail: label };
  return { name, status: 'warn', detail: `${label}: not a distribution the installer knows (${SUPPORTED_OS.join(', ')})` };
}

export function parseKernelVersion(release: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

const below = (v: readonly [number, number], min: readonly [number, number]) => v[0] < min[0] || (v[0] === min[0] && v[1] < min[1]);

export function checkKernel(release: string): Check {
  const name = 'kernel';
  const v = parseKernelVersion(release);
  if (!v) return { name, status: 'warn', detail: `cannot parse the kernel release "${release}"` };
  if (below(v, THRESHOLDS.kernelMin)) return { name, status: 'fail', detail: `${release}: Kubernetes needs ${THRESHOLDS.kernelMin.join('.')} or newer` };
  if (below(v, THRESHOLDS.kernelRecommended)) return { name, status: 'warn', detail: `${release}: ${THRESHOLDS.kernelRecommended.join('.')} or newer is recommended` };
  return { name, status: 'pass', detail: release };
}

export function checkArch(arch: string): Check {
  const ok = ['x64', 'arm64', 'x86_64', 'aarch64'].includes(arch);
  return { name: 'architecture', status: ok ? 'pass' : 'warn', detail: ok ? arch : `${arch}: Kubernetes packages are published for amd64 and arm64` };
}

export function checkCgroup(c: HostFacts['cgroup']): Check {
  const name = 'cgroup v2';
  switch (c.mode) {
    case 'unified':
      return { name, status: 'pass', detail: c.detail };
    case 'hybrid':
    case 'legacy':
      return { name, status: 'fail', detail: `${c.mode} cgroup hierarchy (${c.detail}): the kubelet refuses cgroup v1 by default since Kubernetes 1.35; boot with systemd.unified_cgroup_hierarchy=1` };
    case 'none':
      return { name, status: 'fail', detail: `no cgroup file system mounted (${c.detail})` };
  }
}

export function checkSwap(devices: string[] | null): Check {
  const name = 'swap';
  if (devices === null) return { name, status: 'warn', detail: '/proc/swaps is unreadable' };
  if (devices.length === 0) return { name, status: 'pass', detail: 'no active swap' };
  return { name, status: 'fail', detail: `swap is on (${devices.join(', ')}): the kubelet's default configuration refuses to start; run swapoff -a and remove it from /etc/fstab` };
}

export type ModuleState = 'loaded' | 'builtin' | 'loadable' | 'absent';

export function moduleState(name: string, m: ModuleFacts): { state: ModuleState; evidence: string } {
  if (m.loaded?.includes(name)) return { state: 'loaded', evidence: '/proc/modules' };
  if (m.builtin?.includes(name)) return { state: 'builtin', evidence: 'modules.builtin' };
  if (name === 'br_netfilter' && m.bridgeNetfilterSysctl) return { state: 'loaded', evidence: '/proc/sys/net/bridge exists' };
  if (m.sysModule.includes(name)) return { state: m.loaded === null ? 'builtin' : 'loaded', evidence: '/sys/module' };
  if (m.loadable?.includes(name)) return { state: 'loadable', evidence: 'modules.dep' };
  return { state: 'absent', evidence: m.loaded === null ? 'kernel without loadable module support, not built in' : 'not loaded, not built in, not in modules.dep' };
}

export function checkModule(name: string, m: ModuleFacts, binaries: Record<string, string | null>): Check {
  const check = `module ${name}`;
  const { state, evidence } = moduleState(name, m);
  if (state === 'loaded' || state === 'builtin') return { name: check, status: 'pass', detail: `${state} (${evidence})` };
  if (state === 'loadable') return { name: check, status: 'pass', detail: 'not loaded yet; loadable (install loads it and persists it in modules-load.d)' };
  if (name === 'wireguard') {
    const go = binaries['wireguard-go'];
    if (go) return { name: check, status: 'warn', detail: `absent (${evidence}); the userspace ${go} will be used (slower)` };
    return { name: check, status: 'fail', detail: `absent (${evidence}) and no wireguard-go on PATH: install wireguard-go or a kernel with WireGuard` };
  }
  return { name: check, status: 'fail', detail: `absent (${evidence})` };
}

export function checkPort(p: PortFact): Check {
  const name = `port ${p.port}/${p.proto}`;
  if (p.free) return { name, status: 'pass', detail: `free (${p.purpose})` };
  if (p.ownInterface) return { name, status: 'pass', detail: `held by this node's ${p.ownInterface} (${p.purpose})` };
  return { name, status: 'fail', detail: `in use (${p.error ?? 'unavailable'}); needed for ${p.purpose}` };
}

const gib = (b: number) => `${(b / GiB).toFixed(1)} GiB`;

export function checkDisk(d: HostFacts['disk']): Check {
  const name = 'disk';
  if (!d) return { name, status: 'warn', detail: 'cannot read the free space' };
  const detail = `${gib(d.freeBytes)} free of ${gib(d.totalBytes)} on ${d.path}`;
  if (d.freeBytes < THRESHOLDS.diskFailBelow) return { name, status: 'fail', detail: `${detail}; at least ${gib(THRESHOLDS.diskFailBelow)} needed` };
  if (d.freeBytes < THRESHOLDS.diskWarnBelow) return { name, status: 'warn', detail: `${detail}; ${gib(THRESHOLDS.diskWarnBelow)} recommended` };
  return { name, status: 'pass', detail };
}

export function checkMemory(total: number, cp: boolean): Check {
  const role = cp ? 'controlPlane' : 'worker';
  const detail = `${gib(total)} total`;
  if (total < THRESHOLDS.memoryFailBelow[role]) return { name: 'memory', status: 'fail', detail: `${detail}; a ${cp ? 'control-plane' : 'worker'} node needs ${gib(THRESHOLDS.memoryFailBelow[role])}` };
  if (total < THRESHOLDS.memoryWarnBelow[role]) return { name: 'memory', status: 'warn', detail: `${detail}; ${gib(THRESHOLDS.memoryWarnBelow[role])} recommended` };
  return { name: 'memory', status: 'pass', detail };
}

export function checkCpus(n: number, cp: boolean): Check {
  const min = THRESHOLDS.cpusFailBelow[cp ? 'controlPlane' : 'worker'];
  return n < min ? { name: 'cpus', status: 'fail', detail: `${n} CPU; at least ${min} needed` } : { name: 'cpus', status: 'pass', detail: `${n} CPU` };
}

export function checkTimeSync(t: HostFacts['timeSync']): Check {
  const name = 'time sync';
  const skew = t.controlPlaneSkewMs;
  const skewText = skew === null ? '' : `; clock ${Math.abs(skew) < 1000 ? 'within 1 s' : `${(skew / 1000).toFixed(1)} s off`} of the control plane`;
  if (skew !== null && Math.abs(skew) >= THRESHOLDS.skewFailMs) {
    return { name, status: 'fail', detail: `the clock is ${(Math.abs(skew) / 1000).toFixed(0)} s away from the control plane's: certificates and tokens will be refused` };
  }
  const synced = t.ntpSynchronized === true || t.chrony?.synced === true;
  if (synced) {
    const by = t.ntpSynchronized ? 'timedatectl: NTPSynchronized=yes' : `chrony: synchronised${t.chrony?.offsetSeconds != null ? `, offset ${t.chrony.offsetSeconds.toExponential(1)} s` : ''}`;
    return { name, status: skew !== null && Math.abs(skew) >= THRESHOLDS.skewWarnMs ? 'warn' : 'pass', detail: `${by}${skewText}` };
  }
  if (t.daemons.length) return { name, status: 'warn', detail: `${t.daemons.join(', ')} running but synchronisation not confirmed${skewText}` };
  if (skew !== null && Math.abs(skew) < THRESHOLDS.skewWarnMs) return { name, status: 'warn', detail: `no time synchronisation service found${skewText}` };
  return { name, status: 'warn', detail: `no time synchronisation service found (timedatectl, chrony, ntpd)${skewText}` };
}

export function checkControlPlane(c: HostFacts['controlPlane']): Check {
  const name = 'control plane';
  if (!c) return { name, status: 'warn', detail: 'not checked: no server given (register first or pass --server)' };
  return c.reachable ? { name, status: 'pass', detail: `${c.url}: ${c.detail}` } : { name, status: 'fail', detail: `${c.url}: ${c.detail}` };
}
