/**
 * The node agent benchmarks' process handling (the footprint scenario in main.ts and node-soak.ts):
 * a quiet child run, and stopping the agent daemon together with whatever it started in its own
 * network namespace (the relay, wireguard-go).
 */
import { spawn } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { sleep } from './util.ts';

/** Runs a command (an argument array, no shell) with warnings-only logging; rejects with its output. */
export function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TETHER_LOG_LEVEL: 'warn' } });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args[0]} exited ${code}: ${out}`))));
  });
}

/** The processes in network namespace `ns` (a /proc/<pid>/ns/net link); none for our own. */
export function pidsInNetns(ns: string): number[] {
  if (!ns || ns === readlinkSync('/proc/self/ns/net')) return [];
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readlinkSync(`/proc/${d}/ns/net`) === ns) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** SIGTERM to the agent, 3 s to stop, then SIGKILL to whatever this run left in its namespace. */
export async function stopAgentInNetns(pid: number, netns: string): Promise<void> {
  kill(pid, 'SIGTERM');
  await sleep(3000);
  for (const p of pidsInNetns(netns)) kill(p, 'SIGKILL');
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* gone */
  }
}
