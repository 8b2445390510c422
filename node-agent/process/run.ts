/**
 * Runs host tools (ip, wg, wireguard-go, modprobe, systemctl, …): argument arrays only (never a
 * shell), an explicit minimal environment, output captured. Plain node:child_process rather than
 * execa: the daemon runs `wg show` on every heartbeat, and execa cost it ~5 MB of resident memory. A missing binary is a result
 * (`missing: true`), not an exception, so callers can fall back.
 *
 * In the daemon (after {@link reapLeftoverProcesses} at its start) each child goes through
 * `setpriv --pdeathsig SIGKILL` and carries a recorded run id (common/process-reaper.ts): a kill -9
 * of the daemon kills the child at once, and anything it left is killed at the next start. A tool
 * meant to outlive the run (wireguard-go daemonises) is started with `leavesDaemon`.
 */
import { spawn } from 'node:child_process';
import { trackRun } from '../../common/process-reaper.ts';

export { reapLeftoverProcesses } from '../../common/process-reaper.ts';

export interface RunResult {
  ok: boolean;
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
  /** The binary does not exist (ENOENT). */
  missing: boolean;
}

export interface RunOptions {
  input?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Added to the minimal environment (PATH, LANG=C). */
  env?: Record<string, string>;
  /** The tool daemonises on purpose (wireguard-go): neither killed with the agent nor reaped. */
  leavesDaemon?: boolean;
}

/** A way to run commands; tests substitute a recording fake. */
export type Runner = (file: string, args: string[], o?: RunOptions) => Promise<RunResult>;

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** After a timeout or cancellation SIGTERM, the child gets this long before SIGKILL. */
const FORCE_KILL_MS = 5000;

export const runCommand: Runner = (file, args, o = {}) => {
  const tracked = o.leavesDaemon ? undefined : trackRun(file, args);
  return new Promise<RunResult>((resolve) => {
    const child = spawn(tracked?.file ?? file, tracked?.args ?? args, {
      env: { PATH: process.env.PATH ? `${process.env.PATH}:${DEFAULT_PATH}` : DEFAULT_PATH, LANG: 'C', ...o.env, ...tracked?.env },
      stdio: [o.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let killed = false;
    let forceKill: NodeJS.Timeout | undefined;
    const kill = () => {
      if (killed) return;
      killed = true;
      child.kill('SIGTERM');
      forceKill = setTimeout(() => child.kill('SIGKILL'), FORCE_KILL_MS);
    };
    const timer = setTimeout(kill, o.timeoutMs ?? 60_000);
    o.signal?.addEventListener('abort', kill, { once: true });
    if (o.signal?.aborted) kill();
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // A child that exits without reading its input must not crash the agent (EPIPE).
    if (o.input !== undefined) child.stdin!.on('error', () => undefined).end(o.input);
    let done = false;
    const finish = (exitCode: number | undefined, missing: boolean, error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(forceKill);
      o.signal?.removeEventListener('abort', kill);
      tracked?.done();
      const strip = (t: string) => t.replace(/\r?\n$/, '');
      resolve({ ok: exitCode === 0 && !killed, exitCode, stdout: strip(stdout), stderr: error && !stderr ? error : strip(stderr), missing });
    };
    // Spawning failed (ENOENT: no such binary; EACCES…): there will be no exit code. (Other errors, a
    // failed kill, leave the child running: its 'close' still ends the run.)
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (child.pid === undefined) finish(undefined, err.code === 'ENOENT', err.message);
    });
    child.on('close', (code) => finish(code ?? undefined, false));
  });
};

/** `cmd args…` for messages and dry-run output (never contains secrets: we pass none on argv). */
export function formatArgv(file: string, args: string[]): string {
  return [file, ...args].map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export class CommandFailed extends Error {
  readonly result: RunResult;
  constructor(file: string, args: string[], result: RunResult) {
    const why = result.missing ? 'not found' : `exit ${result.exitCode ?? 'signal'}: ${(result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | ')}`;
    super(`${formatArgv(file, args)} failed (${why})`);
    this.name = 'CommandFailed';
    this.result = result;
  }
}

/** Runs and throws {@link CommandFailed} unless it exits 0. */
export async function mustRun(run: Runner, file: string, args: string[], o?: RunOptions): Promise<RunResult> {
  const r = await run(file, args, o);
  if (!r.ok) throw new CommandFailed(file, args, r);
  return r;
}
