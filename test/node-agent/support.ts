/** Test helpers for the node agent: its CLI as a process, the daemon as a process, root/tool checks. */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, nodeArgs } from '../support/control-plane.ts';

/** What is deployed: bin/tether-node runs the bundle (dist/tether-node.mjs, rebuilt when a source changed) with the daemon's flags. */
const TETHER_NODE = join(REPO_ROOT, 'bin/tether-node');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `bin/tether-node <args>`, optionally inside a network namespace. */
export function runNodeCli(args: string[], o: { env?: NodeJS.ProcessEnv; netns?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const [cmd, argv] = wrapNetns([TETHER_NODE, args], o.netns);
  return runProcess(cmd, argv, { env: { ...process.env, TETHER_NODE_NO_HOST_CHANGES: '1', ...o.env }, timeoutMs: o.timeoutMs ?? 30_000 });
}

export function runTetherCli(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  const [cmd, argv] = nodeArgs('control-plane/cli/main.ts', args);
  return runProcess(cmd, argv, { env: { ...process.env, ...env }, timeoutMs: 30_000 });
}

export function runProcess(cmd: string, args: string[], o: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: o.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d) => (stdout += d));
    p.stderr!.on('data', (d) => (stderr += d));
    const t = setTimeout(() => p.kill('SIGKILL'), o.timeoutMs ?? 30_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface Daemon {
  proc: ChildProcess;
  output(): string;
  /** Resolves once the process has exited and its pipes are closed. */
  closed: Promise<void>;
}

/** SIGKILLs (if still running) and waits until the process and its pipes are gone. */
export async function killAndWait(d: Daemon): Promise<void> {
  if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGKILL');
  await d.closed;
}

export function track(proc: ChildProcess): Daemon {
  let out = '';
  proc.stdout?.on('data', (c) => (out += c));
  proc.stderr?.on('data', (c) => (out += c));
  const closed = new Promise<void>((resolve) => proc.once('close', () => resolve()));
  return { proc, output: () => out, closed };
}

/**
 * Starts `bin/tether-node agent --config <file>` (in a namespace when given); host changes are off
 * for tests. The script exec's node, so the pid is the daemon's.
 */
export function startDaemon(config: string, o: { env?: NodeJS.ProcessEnv; netns?: string } = {}): Daemon {
  const [cmd, argv] = wrapNetns([TETHER_NODE, ['agent', '--config', config]], o.netns);
  return track(spawn(cmd, argv, { env: { ...process.env, TETHER_NODE_NO_HOST_CHANGES: '1', TETHER_LOG_LEVEL: 'info', ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] }));
}

function wrapNetns([cmd, args]: [string, string[]], netns?: string): [string, string[]] {
  return netns ? ['ip', ['netns', 'exec', netns, cmd, ...args]] : [cmd, args];
}

export function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;
