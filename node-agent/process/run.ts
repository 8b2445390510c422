/**
 * Runs host tools (ip, wg, wireguard-go, modprobe, systemctl, …): argument arrays only (execa,
 * never a shell), an explicit minimal environment, output captured. A missing binary is a result
 * (`missing: true`), not an exception, so callers can fall back.
 *
 * In the daemon (after {@link reapLeftoverProcesses} at its start) each child goes through
 * `setpriv --pdeathsig SIGKILL` and carries a recorded run id (common/process-reaper.ts): a kill -9
 * of the daemon kills the child at once, and anything it left is killed at the next start. A tool
 * meant to outlive the run (wireguard-go daemonises) is started with `leavesDaemon`.
 */
import { execa } from 'execa';
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

export const runCommand: Runner = async (file, args, o = {}) => {
  const tracked = o.leavesDaemon ? undefined : trackRun(file, args);
  const r = await execa(tracked?.file ?? file, tracked?.args ?? args, {
    reject: false,
    extendEnv: false,
    env: { PATH: process.env.PATH ? `${process.env.PATH}:${DEFAULT_PATH}` : DEFAULT_PATH, LANG: 'C', ...o.env, ...tracked?.env },
    ...(o.input !== undefined ? { input: o.input } : { stdin: 'ignore' }),
    ...(o.signal ? { cancelSignal: o.signal } : {}),
    timeout: o.timeoutMs ?? 60_000,
    stripFinalNewline: true,
  }).finally(() => tracked?.done());
  const code = (r as { code?: string }).code;
  return {
    ok: !r.failed && r.exitCode === 0,
    exitCode: r.exitCode,
    stdout: typeof r.stdout === 'string' ? r.stdout : '',
    stderr: typeof r.stderr === 'string' ? r.stderr : '',
    missing: code === 'ENOENT',
  };
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
