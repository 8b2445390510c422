/**
 * Gathers the facts preflight decides on, from this host: /etc/os-release, /proc, /sys, /lib/modules,
 * port binds, statfs, timedatectl/chronyc, and a TLS connection to the control plane. Read-only.
 */
import os from 'node:os';
import net from 'node:net';
import dgram from 'node:dgram';
import https from 'node:https';
import { existsSync, readdirSync, readFileSync, statfsSync } from 'node:fs';
import { errorMessage } from '../../common/errors.ts';
import type { CgroupMode, HostFacts, ModuleFacts, PortFact } from './preflight.checks.ts';
import { requiredPorts } from './preflight.checks.ts';
import { runCommand, type Runner } from '../process/run.ts';
import { which } from '../process/which.ts';

export interface GatherOptions {
  controlPlaneNode: boolean;
  wg: { wg0: { interface: string; listenPort: number }; wg1: { interface: string; listenPort: number } };
  server?: { url: string; caPem?: string };
  diskPath?: string;
  run?: Runner;
  /** Where /proc, /sys, /etc and /lib live (tests point it at a fake tree). */
  fsRoot?: string;
}

export async function gatherFacts(o: GatherOptions): Promise<HostFacts> {
  const run = o.run ?? runCommand;
  const root = o.fsRoot ?? '';
  const kernelRelease = os.release();
  const binaries = Object.fromEntries(['ip', 'wg', 'wireguard-go', 'modprobe', 'sysctl', 'kubeadm', 'kubelet', 'containerd', 'timedatectl', 'chronyc'].map((b) => [b, which(b)]));
  const [ports, timeSync, controlPlane] = await Promise.all([
    gatherPorts(o, run),
    gatherTimeSync(run, root, binaries),
    o.server ? probeControlPlane(o.server.url, o.server.caPem) : Promise.resolve(null),
  ]);
  return {
    os: readOsRelease(`${root}/etc/os-release`),
    kernelRelease,
    arch: os.arch(),
    cgroup: cgroupMode(readText(`${root}/proc/mounts`) ?? ''),
    swapDevices: parseSwaps(readText(`${root}/proc/swaps`)),
    modules: gatherModules(root, kernelRelease),
    binaries,
    ports,
    disk: diskFacts(o.diskPath ?? '/'),
    memoryTotalBytes: os.totalmem(),
    cpus: os.availableParallelism(),
    timeSync: { ...timeSync, controlPlaneSkewMs: controlPlane?.skewMs ?? null },
    controlPlane: controlPlane ? { url: controlPlane.url, reachable: controlPlane.reachable, detail: controlPlane.detail } : null,
  };
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!.replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1');
  }
  return out;
}

function readOsRelease(path: string): HostFacts['os'] {
  const t = readText(path) ?? readText('/usr/lib/os-release');
  if (t === null) return null;
  const r = parseOsRelease(t);
  return { id: r.ID, idLike: r.ID_LIKE, versionId: r.VERSION_ID, prettyName: r.PRETTY_NAME };
}

/** unified: cgroup2 at /sys/fs/cgroup; hybrid: v1 controllers plus a cgroup2 elsewhere; legacy: v1 only. */
export function cgroupMode(mounts: string): { mode: CgroupMode; detail: string } {
  const rows = mounts.split('\n').map((l) => l.split(' ')).filter((r) => r.length >= 3);
  const at = rows.find((r) => r[1] === '/sys/fs/cgroup');
  if (at?.[2] === 'cgroup2') return { mode: 'unified', detail: 'cgroup2 mounted at /sys/fs/cgroup' };
  const v1 = rows.filter((r) => r[2] === 'cgroup').length;
  const v2 = rows.filter((r) => r[2] === 'cgroup2').map((r) => r[1]);
  if (v1 && v2.length) return { mode: 'hybrid', detail: `${v1} cgroup v1 hierarchies, cgroup2 only at ${v2.join(', ')}` };
  if (v1) return { mode: 'legacy', detail: `${v1} cgroup v1 hierarchies` };
  return { mode: 'none', detail: at ? `${at[2]} at /sys/fs/cgroup` : 'nothing at /sys/fs/cgroup' };
}

export function parseSwaps(text: string | null): string[] | null {
  if (text === null) return null;
  return text.split('\n').slice(1).map((l) => l.trim().split(/\s+/)[0]!).filter((d) => d && d.length > 0);
}

/** Module names as the kernel reports them (dashes become underscores). */
const modName = (path: string) => path.split('/').pop()!.replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');

export function gatherModules(root: string, release: string): ModuleFacts {
  const procModules = readText(`${root}/proc/modules`);
  const builtin = readText(`${root}/lib/modules/${release}/modules.builtin`);
  const dep = readText(`${root}/lib/modules/${release}/modules.dep`);
  let sysModule: string[] = [];
  try {
    sysModule = readdirSync(`${root}/sys/module`);
  } catch {
    /* no sysfs */
  }
  return {
    loaded: procModules === null ? null : procModules.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean),
    builtin: builtin === null ? null : builtin.split('\n').filter(Boolean).map(modName),
    loadable: dep === null ? null : dep.split('\n').map((l) => l.split(':')[0]!).filter(Boolean).map(modName),
    sysModule,
    bridgeNetfilterSysctl: existsSync(`${root}/proc/sys/net/bridge/bridge-nf-call-iptables`),
  };
}

async function gatherPorts(o: GatherOptions, run: Runner): Promise<PortFact[]> {
  const own = new Map<number, string>();
  for (const w of [o.wg.wg0, o.wg.wg1]) {
    const r = await run('wg', ['show', w.interface, 'listen-port'], { timeoutMs: 5000 });
    if (r.ok && Number(r.stdout.trim()) === w.listenPort) own.set(w.listenPort, w.interface);
  }
  const wanted = requiredPorts(o.controlPlaneNode, { wg0: o.wg.wg0.listenPort, wg1: o.wg.wg1.listenPort });
  return Promise.all(
    wanted.map(async (p) => {
      const err = p.proto === 'tcp' ? await tryTcp(p.port) : await tryUdp(p.port);
      const ownInterface = p.proto === 'udp' && err ? own.get(p.port) : undefined;
      return { ...p, free: err === undefined, ...(err ? { error: err } : {}), ...(ownInterface ? { ownInterface } : {}) };
    }),
  );
}

/** Binds the port on all addresses and lets it go: undefined when free, else the error code. */
export function tryTcp(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    s.listen({ port, host: '0.0.0.0', exclusive: true }, () => s.close(() => resolve(undefined)));
  });
}

export function tryUdp(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', (e: NodeJS.ErrnoException) => {
      s.close();
      resolve(e.code ?? e.message);
    });
    s.bind({ port, address: '0.0.0.0', exclusive: true }, () => s.close(() => resolve(undefined)));
  });
}

function diskFacts(path: string): HostFacts['disk'] {
  try {
    const s = statfsSync(path);
    return { path, freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
  } catch {
    return null;
  }
}

export function parseChronyTracking(text: string): { synced: boolean; offsetSeconds: number | null } {
  const leap = /^Leap status\s*:\s*(.+)$/m.exec(text)?.[1]?.trim();
  const off = /^System time\s*:\s*([0-9.]+) seconds (fast|slow)/m.exec(text);
  const ref = /^Reference ID\s*:\s*(\S+)/m.exec(text)?.[1];
  return {
    synced: leap === 'Normal' && ref !== '00000000',
    offsetSeconds: off ? Number(off[1]) * (off[2] === 'slow' ? -1 : 1) : null,
  };
}

const TIME_DAEMONS = ['chronyd', 'ntpd', 'systemd-timesyn', 'openntpd', 'ntpsec', 'timesyncd'];

async function gatherTimeSync(run: Runner, root: string, bin: Record<string, string | null>): Promise<Omit<HostFacts['timeSync'], 'controlPlaneSkewMs'>> {
  let ntpSynchronized: boolean | null = null;
  if (bin.timedatectl) {
    const r = await run('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], { timeoutMs: 5000 });
    if (r.ok) ntpSynchronized = r.stdout.trim() === 'yes';
  }
  if (ntpSynchronized === null && existsSync(`${root}/run/systemd/timesync/synchronized`)) ntpSynchronized = true;
  let chrony: HostFacts['timeSync']['chrony'] = null;
  if (bin.chronyc) {
    const r = await run('chronyc', ['-n', 'tracking'], { timeoutMs: 5000 });
    if (r.ok) chrony = parseChronyTracking(r.stdout);
  }
  const daemons = new Set<string>();
  try {
    for (const pid of readdirSync(`${root}/proc`).filter((d) => /^\d+$/.test(d))) {
      const comm = readText(`${root}/proc/${pid}/comm`)?.trim();
      if (comm && TIME_DAEMONS.includes(comm)) daemons.add(comm);
    }
  } catch {
    /* no /proc */
  }
  return { ntpSynchronized, chrony, daemons: [...daemons] };
}

/** A TLS connection to the control plane (verifying its certificate) and GET /healthz; its Date gives the clock skew. */
export function probeControlPlane(url: string, caPem?: string, timeoutMs = 5000): Promise<{ url: string; reachable: boolean; detail: string; skewMs: number | null }> {
  return new Promise((resolve) => {
    const started = Date.now();
    let u: URL;
    try {
      u = new URL('/healthz', url);
    } catch (err) {
      resolve({ url, reachable: false, detail: errorMessage(err), skewMs: null });
      return;
    }
    const req = https.get(u, { ...(caPem ? { ca: caPem } : {}), timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      const rtt = Date.now() - started;
      const date = res.headers.date ? Date.parse(res.headers.date) : NaN;
      // Date has a 1 s resolution: compare against the middle of the exchange, with 500 ms for the rounding.
      const skewMs = Number.isFinite(date) ? date + 500 - (started + rtt / 2) : null;
      const ok = res.statusCode === 200;
      resolve({ url, reachable: ok, detail: ok ? `TLS verified, /healthz 200 in ${rtt} ms` : `/healthz answered ${res.statusCode}`, skewMs });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ url, reachable: false, detail: `${err.code ? `${err.code}: ` : ''}${err.message}`, skewMs: null }));
  });
}
