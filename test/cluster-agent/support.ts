/**
 * End-to-end helpers for the cluster agent: bare git repos on file://, the agent as a real child
 * process (KUBECONFIG from envtest), job submission and waiting, Kubernetes reads, /proc scans.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isTerminal, type CommandView } from '../../common/wire.ts';
import { kubeRequest, type Envtest } from '../support/envtest.ts';
import { eventually, nodeArgs, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { toolPath } from '../support/toolchain.ts';

// ------------------------------------------------------------------ git

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Tether Test',
  GIT_AUTHOR_EMAIL: 'test@tether.invalid',
  GIT_COMMITTER_NAME: 'Tether Test',
  GIT_COMMITTER_EMAIL: 'test@tether.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
};

const git = (cwd: string, args: string[]) => execFileSync('git', args, { cwd, env: GIT_ENV, encoding: 'utf8' }).trim();

export interface BareRepo {
  url: string;
  /** Writes the files (path -> content; null deletes), commits, pushes to `branch`; returns the SHA. */
  commit(files: Record<string, string | null | { symlink: string }>, branch?: string): string;
}

export function bareRepo(root: string, name: string): BareRepo {
  const bare = join(root, `${name}.git`);
  const work = join(root, `${name}-work`);
  mkdirSync(bare, { recursive: true });
  git(bare, ['init', '--quiet', '--bare', '--initial-branch=main']);
  mkdirSync(work, { recursive: true });
  git(work, ['init', '--quiet', '--initial-branch=main']);
  git(work, ['remote', 'add', 'origin', bare]);
  return {
    url: `file://${bare}`,
    commit(files, branch = 'main') {
      for (const [p, content] of Object.entries(files)) {
        const f = join(work, p);
        if (content === null) git(work, ['rm', '-q', '--', p]);
        else if (typeof content === 'object') {
          mkdirSync(dirname(f), { recursive: true });
          symlinkSync(content.symlink, f);
        } else {
          mkdirSync(dirname(f), { recursive: true });
          writeFileSync(f, content);
        }
      }
      git(work, ['add', '-A']);
      git(work, ['commit', '--quiet', '--allow-empty', '-m', `commit ${Date.now()}`]);
      git(work, ['push', '--quiet', '--force', 'origin', `HEAD:refs/heads/${branch}`]);
      return git(work, ['rev-parse', 'HEAD']);
    },
  };
}

// ------------------------------------------------------------------ the agent process

export interface AgentProcess {
  proc: ChildProcess;
  output(): string;
  waitForLog(re: RegExp, timeoutMs?: number): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface AgentEnv {
  t: TestControlPlane;
  env: Envtest;
  namespace: string;
  workDir: string;
  token?: string;
  extra?: Record<string, string>;
  /** Command-line flags (they win over the environment). */
  args?: string[];
}

/** A tofu CLI configuration that never installs providers from the network. */
export function offlineTofurc(dir: string): string {
  const file = join(dir, 'tofurc');
  mkdirSync(join(dir, 'tofu-mirror'), { recursive: true });
  writeFileSync(file, `disable_checkpoint = true\nprovider_installation {\n  filesystem_mirror {\n    path = "${join(dir, 'tofu-mirror')}"\n  }\n}\n`);
  return file;
}

export function spawnAgent(a: AgentEnv): AgentProcess {
  const caFile = join(a.workDir, '..', 'cp-ca.crt');
  writeFileSync(caFile, a.t.caPem);
  const [cmd, args] = nodeArgs('cluster-agent/daemon/main.ts', a.args ?? []);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TETHER_URL: a.t.url,
    TETHER_CA_FILE: caFile,
    TETHER_AGENT_NAMESPACE: a.namespace,
    KUBECONFIG: a.env.kubeconfigPath,
    TETHER_HELM_BIN: toolPath('helm'),
    TETHER_TOFU_BIN: toolPath('tofu'),
    TETHER_WORK_DIR: a.workDir,
    TETHER_HEARTBEAT_INTERVAL_MS: '1000',
    TETHER_POLL_WAIT_SECONDS: '5',
    TETHER_SHUTDOWN_GRACE_SECONDS: '5',
    TETHER_KILL_GRACE_SECONDS: '3',
    TETHER_CONCURRENCY: '2',
    TF_CLI_CONFIG_FILE: offlineTofurc(join(a.workDir, '..')),
    TETHER_LOG_LEVEL: 'debug',
    ...(a.token ? { TETHER_BOOTSTRAP_TOKEN: a.token } : {}),
    ...a.extra,
  };
  const proc = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  if (process.env.TETHER_TEST_VERBOSE === '1') {
    proc.stdout!.pipe(process.stderr);
    proc.stderr!.pipe(process.stderr);
  }
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return {
    proc,
    output: () => out,
    async waitForLog(re, timeoutMs = 20_000) {
      await eventually(() => {
        if (proc.exitCode !== null) throw new Error(`the agent exited (${proc.exitCode}):\n${out.slice(-4000)}`);
        return re.test(out);
      }, timeoutMs, `agent log ${re}`).catch((err: Error) => {
        throw new Error(`${err.message}\n--- agent output ---\n${out.slice(-4000)}`);
      });
    },
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

// ------------------------------------------------------------------ jobs

export async function submit(t: TestControlPlane, cid: string, type: string, spec: unknown, extra: Record<string, unknown> = {}): Promise<number> {
  const res = await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: cid }, type, spec, maxAttempts: 1, ...extra });
  return res.body.id;
}

export async function job(t: TestControlPlane, id: number): Promise<CommandView> {
  return (await t.admin.request<CommandView>('GET', `/v1/commands/${id}`)).body;
}

export async function jobLogs(t: TestControlPlane, id: number): Promise<string> {
  const r = await t.admin.request<{ lines: { text: string }[] }>('GET', `/v1/commands/${id}/logs`);
  return r.body.lines.map((l) => l.text).join('\n');
}

export async function waitForJob(t: TestControlPlane, id: number, timeoutMs = 60_000): Promise<CommandView> {
  const view = await eventually(async () => {
    const v = await job(t, id);
    return isTerminal(v.state) ? v : undefined;
  }, timeoutMs, `job ${id} to finish`).catch(async (err: Error) => {
    throw new Error(`${err.message}; state ${(await job(t, id)).state}; logs:\n${await jobLogs(t, id)}`);
  });
  return view;
}

/** Runs a job to its end and asserts it succeeded (with its logs in the message when not). */
export async function runJob(t: TestControlPlane, cid: string, type: string, spec: unknown, timeoutMs = 90_000): Promise<CommandView> {
  const id = await submit(t, cid, type, spec);
  const v = await waitForJob(t, id, timeoutMs);
  if (v.state !== 'succeeded') assert.fail(`job ${id} (${type}) ended ${v.state}: ${JSON.stringify(v.error)}\nlogs:\n${await jobLogs(t, id)}`);
  return v;
}

// ------------------------------------------------------------------ cluster

export async function kubeGet<T = Record<string, unknown>>(env: Envtest, path: string): Promise<T | undefined> {
  const r = await kubeRequest<T>(env, 'GET', path);
  if (r.status === 404) return undefined;
  if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.text}`);
  return r.body;
}

export async function createNamespace(env: Envtest, name: string): Promise<void> {
  const r = await kubeRequest(env, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  if (r.status !== 201 && r.status !== 409) throw new Error(`create namespace ${name}: ${r.status} ${r.text}`);
}

export async function createSecret(env: Envtest, namespace: string, name: string, data: Record<string, string>): Promise<void> {
  const body = { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, stringData: data };
  const r = await kubeRequest(env, 'POST', `/api/v1/namespaces/${namespace}/secrets`, body);
  if (r.status !== 201) throw new Error(`create secret ${name}: ${r.status} ${r.text}`);
}

export async function secretData(env: Envtest, namespace: string, name: string): Promise<Record<string, string> | undefined> {
  const s = await kubeGet<{ data?: Record<string, string> }>(env, `/api/v1/namespaces/${namespace}/secrets/${name}`);
  if (!s) return undefined;
  return Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

// ------------------------------------------------------------------ processes

/** Pids whose command line contains `marker`. */
export function pidsWithCmdline(marker: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ').includes(marker)) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out.filter((p) => p !== process.pid);
}

/** The process group of a pid (field 5 of /proc/<pid>/stat). */
export function pgidOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[2]);
  } catch {
    return undefined;
  }
}

/** Live (non-zombie) pids in a process group. */
export function pidsInGroup(pgid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

export { tempDir };

/** A post-install hook Job template that never completes without a kubelet: helm waits on it. */
export const NEVER_ENDING_HOOK_JOB: readonly string[] = [
  'apiVersion: batch/v1',
  'kind: Job',
  'metadata:',
  '  name: {{ .Release.Name }}-hook',
  '  annotations:',
  '    "helm.sh/hook": post-install',
  'spec:',
  '  template:',
  '    spec:',
  '      restartPolicy: Never',
  '      containers:',
  '      - name: wait',
  '        image: busybox',
  '        command: ["sleep", "3600"]',
];
