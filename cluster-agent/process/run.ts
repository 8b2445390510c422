/**
 * Runs helm and tofu: argument arrays only (execa, never a shell), a minimal explicit environment
 * (the agent's own variables, such as its bootstrap token, are not inherited), the child in its
 * own process group, output streamed line by line. On abort the whole group gets SIGTERM, then
 * SIGKILL after the grace period; after the leader exits the group is always SIGKILLed, so no
 * grandchild (a provisioner, a hook) outlives the run.
 *
 * If the agent itself is killed (kill -9, OOM): the child is started through `setpriv
 * --pdeathsig SIGKILL` (util-linux), so the kernel kills it the moment the agent dies; and every
 * run is recorded in a file under the work dir and carries a random `TETHER_RUN_ID` in its
 * environment, which its descendants inherit (common/process-reaper.ts). The next start ({@link reapLeftoverProcesses})
 * SIGKILLs every process still carrying a recorded id: a grandchild (a provisioner, a provider
 * plugin) lives at most until the agent is back. A descendant that scrubs its environment and
 * leaves the process group is out of reach (in a container, the pod's end kills it anyway).
 */
import { execa } from 'execa';
import type { Readable } from 'node:stream';
import type { Logger } from '../../common/logger.ts';
import { trackRun } from '../../common/process-reaper.ts';

export interface RunOptions {
  cwd?: string;
  /** The complete environment of the child (merged over {@link baseEnv}). */
  env?: Record<string, string>;
  signal: AbortSignal;
  killGraceMs: number;
  log: Logger;
  /** Receives every output line (stdout lines only when not captured). */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Keep stdout for the caller instead of streaming it (JSON results, secrets). */
  captureStdout?: boolean;
}

export interface RunResult {
  exitCode: number | undefined;
  signal: string | undefined;
  stdout: string;
  /** The last lines of stderr, for error messages. */
  stderrTail: string;
  aborted: boolean;
}

// KUBERNETES_SERVICE_HOST/PORT: in a Pod, tofu's kubernetes backend (in_cluster_config) finds the
// API server through them, as client-go does; without them `tofu init` fails in-cluster.
const PASS_THROUGH = [
  'PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_ALL', 'TZ', 'SSL_CERT_FILE', 'SSL_CERT_DIR',
  'HTTPS_PROXY', 'HTTP_PROXY', 'NO_PROXY', 'https_proxy', 'http_proxy', 'no_proxy',
  'KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT',
];

/** The variables a child inherits from the agent: a fixed allow-list. */
export function baseEnv(from: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of PASS_THROUGH) {
    const v = from[k];
    if (v !== undefined) env[k] = v;
  }
  return env;
}

/** Process groups still running, killed if the agent exits normally while they run. */
const liveGroups = new Set<number>();
let exitHook = false;

function killGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false; // the group is gone
  }
}

export { reapLeftoverProcesses } from '../../common/process-reaper.ts';

export async function runProcess(file: string, args: string[], o: RunOptions): Promise<RunResult> {
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const pid of liveGroups) killGroup(pid, 'SIGKILL');
    });
  }
  if (o.signal.aborted) return { exitCode: undefined, signal: undefined, stdout: '', stderrTail: '', aborted: true };
  const run = trackRun(file, args);
  const child = execa(run.file, run.args, {
    cwd: o.cwd,
    env: { ...baseEnv(), ...o.env, ...run.env },
    extendEnv: false,
    detached: true,
    cleanup: false,
    reject: false,
    buffer: false,
    stdin: 'ignore',
    windowsHide: true,
  });
  const pid = child.pid;
  if (pid !== undefined) liveGroups.add(pid);
  o.log.debug({ file, args: args.map(redactArg), pid }, 'process started');

  let stdout = '';
  const stderrLines: string[] = [];
  const lines = (stream: Readable | null, name: 'stdout' | 'stderr') => {
    if (!stream) return;
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      if (name === 'stdout' && o.captureStdout) {
        stdout += chunk;
        return;
      }
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      for (const l of parts) emitLine(l, name);
    });
    stream.on('end', () => {
      if (partial) emitLine(partial, name);
      partial = '';
    });
  };
  const emitLine = (line: string, name: 'stdout' | 'stderr') => {
    const clean = line.replace(/\r$/, '');
    if (name === 'stderr') {
      stderrLines.push(clean);
      if (stderrLines.length > 40) stderrLines.shift();
    }
    o.onLine?.(clean, name);
  };
  lines(child.stdout, 'stdout');
  lines(child.stderr, 'stderr');

  let killTimer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    if (pid === undefined) return;
    o.log.info({ pid, reason: String((o.signal.reason as Error | undefined)?.message ?? o.signal.reason) }, 'stopping process group');
    killGroup(pid, 'SIGTERM');
    killTimer = setTimeout(() => {
      if (killGroup(pid, 'SIGKILL')) o.log.warn({ pid }, 'process group killed after the grace period');
    }, o.killGraceMs);
  };
  o.signal.addEventListener('abort', onAbort, { once: true });

  try {
    const result = await child;
    return {
      exitCode: result.exitCode,
      signal: result.signal,
      stdout,
      stderrTail: stderrLines.join('\n'),
      aborted: o.signal.aborted,
    };
  } finally {
    o.signal.removeEventListener('abort', onAbort);
    clearTimeout(killTimer);
    if (pid !== undefined) {
      killGroup(pid, 'SIGKILL'); // whatever the leader left behind in its group
      liveGroups.delete(pid);
    }
    run.done();
  }
}

/** Arguments as logged: values of --set-like flags are not. */
function redactArg(a: string): string {
  return /^--(set|set-string|set-json|set-file|password|token)=/.test(a) ? `${a.split('=')[0]}=[redacted]` : a;
}

/** A one-line reason for a failed run. */
export function failureMessage(what: string, r: RunResult): string {
  const tail = r.stderrTail.trim().split('\n').slice(-8).join('\n');
  const how = r.signal ? `was killed by ${r.signal}` : `exited with code ${r.exitCode}`;
  return `${what} ${how}${tail ? `: ${tail}` : ''}`;
}
