/**
 * Which CPUs the bench's processes may run on (`BENCH_PIN`).
 *
 * Unset: anywhere, as before; the load generators and the control plane share every core, and a
 * burst of either delays the other. `split`: the control plane (every thread: the event loop, V8's
 * helpers, the checkpoint worker, libuv's pool) on the first CPU, and the bench with its load
 * generators on the others: the control plane gets one core whatever the agents do, which is what
 * the targets' "on ≤ 1 core" means, and none of the agents' CPU is taken from it.
 *
 * Pinning is by `taskset` (sched_setaffinity), inherited by every thread and child a process starts.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

export interface Pinning {
  /** The CPU list the control plane gets (taskset's syntax). */
  server: string;
  /** The CPU list the bench and its load generators get. */
  others: string;
}

/** The pinning that `BENCH_PIN` asks for on a machine with `cpus` CPUs; an error for anything else. */
export function pinningFor(value: string | undefined, cpus: number): Pinning | null {
  if (value === undefined || value === '' || value === 'off') return null;
  if (value !== 'split') throw new Error(`BENCH_PIN must be split or off (got ${JSON.stringify(value)})`);
  if (!Number.isInteger(cpus) || cpus < 2) throw new Error(`BENCH_PIN=split needs two CPUs or more (this machine has ${cpus})`);
  return { server: '0', others: cpus === 2 ? '1' : `1-${cpus - 1}` };
}

/** The pinning of this run, read once. */
export const PINNING: Pinning | null = pinningFor(process.env.BENCH_PIN, availableParallelism());

/** A command line run on `cpus` (taskset exec's the command: the pid stays the command's), or unchanged without pinning. */
export function onCpus(cpus: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return cpus === undefined ? [cmd, args] : ['taskset', ['--cpu-list', cpus, cmd, ...args]];
}

/** Moves every thread of this process to the bench's CPUs (its children inherit them). */
export function pinSelf(p: Pinning | null = PINNING): void {
  if (!p) return;
  const r = spawnSync('taskset', ['--all-tasks', '--cpu-list', '--pid', p.others, String(process.pid)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`taskset for the bench failed (exit ${r.status}): ${r.stderr}`);
}

/** The CPU list a process may run on, as the kernel says (`Cpus_allowed_list`). */
export function allowedCpus(pid: number): string | undefined {
  try {
    return /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}
