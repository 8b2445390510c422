// The Tether images in tests: built by scripts/images.sh (buildah, cached in ~/.cache/tether/images)
// and run the way a container runtime runs them, with runc directly: the image's rootfs (a buildah
// working container) mounted READ-ONLY, the image's user, env and entrypoint, tmpfs and bind mounts
// as a Pod spec would give them, and the host's network namespace (so loopback servers are reachable).
//
//   const images = await buildImages();                       // { 'cluster-agent': {ref, archive}, ... }
//   const c = await runImage(images['control-plane'].ref, { args: ['--help'] });
//   await c.exited; c.output();
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGzip } from 'node:zlib';
import { REPO_ROOT } from './control-plane.ts';

const execFileP = promisify(execFile);

export type ImageName = 'cluster-agent' | 'control-plane' | 'pause';
export interface BuiltImage {
  /** docker.io/tether/<name>:dev-<input hash>, in buildah's storage. */
  ref: string;
  /** docker-archive of the image (for `ctr images import`). */
  archive: string;
}

/** Why images cannot be built or run here, or undefined when they can. */
export function imagesUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'building and running images needs root (buildah storage, runc)';
  return undefined;
}

/** Builds (or finds cached) images with scripts/images.sh and returns where they are. */
export async function buildImages<N extends ImageName>(names: N[]): Promise<Record<N, BuiltImage>> {
  const { stdout } = await execFileP('bash', [join(REPO_ROOT, 'scripts/images.sh'), ...names], {
    cwd: REPO_ROOT,
    maxBuffer: 1 << 20,
    timeout: 40 * 60_000,
  }).catch((err: { stderr?: string; message: string }) => {
    throw new Error(`scripts/images.sh failed: ${err.message}\n${err.stderr ?? ''}`);
  });
  const env: Record<string, string> = {};
  for (const m of stdout.matchAll(/^export (TETHER_IMAGE_[A-Z_]+)=(\S+)$/gm)) env[m[1]!] = m[2]!.replace(/^'(.*)'$/, '$1');
  const out = {} as Record<N, BuiltImage>;
  for (const n of names) {
    const key = `TETHER_IMAGE_${n.toUpperCase().replace(/-/g, '_')}`;
    const ref = env[key];
    const archive = env[`${key}_ARCHIVE`];
    if (!ref || !archive) throw new Error(`scripts/images.sh printed no ${key}:\n${stdout}`);
    out[n] = { ref, archive };
  }
  return out;
}

export interface ImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
}

export async function imageConfig(ref: string): Promise<ImageConfig> {
  const { stdout } = await execFileP('buildah', ['inspect', '--type', 'image', ref], { maxBuffer: 16 << 20 });
  const j = JSON.parse(stdout) as { OCIv1: { config?: ImageConfig } };
  return j.OCIv1.config ?? {};
}

/** Bytes of the image's layers unpacked (what `docker images` reports), from its docker-archive. */
export async function unpackedSize(archive: string): Promise<number> {
  const { stdout } = await execFileP('tar', ['-tvf', archive], { maxBuffer: 16 << 20 });
  let total = 0;
  for (const line of stdout.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 6 && /\.tar$/.test(f[f.length - 1]!)) total += Number(f[2]);
  }
  return total;
}

/** Bytes of the image's layers gzip-compressed (what a registry stores and a node pulls). */
export async function compressedSize(archive: string): Promise<number> {
  const tar = spawn('tar', ['-xOf', archive, '--wildcards', '*.tar'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const gz = createGzip({ level: 6 });
  let bytes = 0;
  gz.on('data', (d: Buffer) => (bytes += d.length));
  await pipeline(tar.stdout!, gz);
  return bytes;
}

/** Mounts the image's filesystem (a throwaway working container) for inspection. */
export async function mountImage(ref: string): Promise<{ root: string; release(): Promise<void> }> {
  const name = `tether-inspect-${randomBytes(4).toString('hex')}`;
  await execFileP('buildah', ['from', '--pull=never', '--name', name, ref]);
  const { stdout } = await execFileP('buildah', ['mount', name]);
  return { root: stdout.trim(), release: async () => void (await execFileP('buildah', ['rm', name]).catch(() => undefined)) };
}

export interface Mount {
  destination: string;
  /** Host path for a bind mount; omit for an empty directory owned by root, mode 0777 (an emptyDir). */
  source?: string;
  readonly?: boolean;
}

export interface RunOptions {
  /** Replaces the image's Cmd (arguments to the entrypoint). */
  args?: string[];
  /** Replaces the entrypoint and Cmd altogether. */
  command?: string[];
  env?: Record<string, string>;
  mounts?: Mount[];
  /** uid:gid; default the image's USER. */
  user?: string;
}

export interface RunningContainer {
  id: string;
  proc: ChildProcess;
  /** Resolves with the exit code once the container is gone. */
  exited: Promise<number | null>;
  output(): string;
  /** Sends a signal to the container's init process. */
  kill(signal?: 'TERM' | 'KILL'): Promise<void>;
  /** Kills (if still running) and removes the container and its working copy. Idempotent. */
  remove(): Promise<void>;
}

/** Runs an image under runc with a read-only root filesystem. */
export async function runImage(ref: string, opts: RunOptions = {}): Promise<RunningContainer> {
  const cfg = await imageConfig(ref);
  const id = `tether-test-${randomBytes(4).toString('hex')}`;
  await execFileP('buildah', ['from', '--pull=never', '--name', id, ref]);
  const rootfs = (await execFileP('buildah', ['mount', id])).stdout.trim();
  const bundle = mkdtempSync(join(tmpdir(), 'tether-oci-'));
  const [uid, gid] = (opts.user ?? cfg.User ?? '0:0').split(':').map((v) => Number(v)) as [number, number | undefined];
  if (!Number.isInteger(uid)) throw new Error(`image ${ref}: numeric USER expected (got ${cfg.User})`);
  const env = [...(cfg.Env ?? []).filter((e) => !Object.hasOwn(opts.env ?? {}, e.split('=')[0]!)), ...Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`)];
  const args = opts.command ?? [...(cfg.Entrypoint ?? []), ...(opts.args ?? cfg.Cmd ?? [])];
  const mounts = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/etc/resolv.conf', type: 'bind', source: '/etc/resolv.conf', options: ['rbind', 'ro'] },
    ...(opts.mounts ?? []).map((m, i) => {
      let source = m.source;
      if (!source) {
        // What the kubelet makes of an emptyDir: a fresh host directory, root's, mode 0777.
        source = join(bundle, `empty-${i}`);
        mkdirSync(source);
        chmodSync(source, 0o777);
      }
      return { destination: m.destination, type: 'bind', source, options: ['rbind', 'nosuid', 'nodev', m.readonly ? 'ro' : 'rw'] };
    }),
  ];
  const spec = {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid, gid: gid ?? uid },
      args,
      env,
      cwd: cfg.WorkingDir || '/',
      capabilities: { bounding: [], effective: [], permitted: [], ambient: [] },
      noNewPrivileges: true,
    },
    root: { path: rootfs, readonly: true },
    hostname: id,
    mounts,
    linux: {
      // No network namespace: the container shares the host's (loopback servers of the test).
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/sys/firmware'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
  const proc = spawn('runc', ['run', '--bundle', bundle, id], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString('utf8');
    if (out.length > 1 << 20) out = out.slice(-(1 << 19));
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<number | null>((r) => proc.once('close', (code) => r(code)));
  let removed = false;
  return {
    id,
    proc,
    exited,
    output: () => out,
    async kill(signal = 'TERM') {
      await execFileP('runc', ['kill', id, signal]).catch(() => undefined);
    },
    async remove() {
      if (removed) return;
      removed = true;
      await execFileP('runc', ['delete', '--force', id]).catch(() => undefined);
      await exited;
      await execFileP('buildah', ['rm', id]).catch(() => undefined);
      rmSync(bundle, { recursive: true, force: true });
    },
  };
}

/** Output of a short-lived container (its exit code and everything it printed). */
export async function runToEnd(ref: string, opts: RunOptions = {}): Promise<{ code: number | null; output: string }> {
  const c = await runImage(ref, opts);
  try {
    const code = await c.exited;
    return { code, output: c.output() };
  } finally {
    await c.remove();
  }
}
