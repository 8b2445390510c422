/**
 * What the machine did during a run, apart from the code measured. This VM's speed changes through
 * the day (docs/performance.md: the same code took ~40 % more CPU per heartbeat one afternoon than
 * that morning, and so did the unchanged load generator), so each result records:
 * - `speedProbeMs`, timed before anything starts and again at the end, the median of nine each:
 *   `cpu`, a fixed piece of JavaScript work (JSON and SHA-256 over heartbeat-sized objects, the
 *   server's kind of work), and `memory`, a walk of 500,000 dependent loads through 64 MiB;
 * - the share of the machine's CPU time that was steal (a vCPU ready but the host running something
 *   else) and that was busy over the run, from /proc/stat.
 * Runs compare by CPU per operation only when their probes agree; otherwise alternate them.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** The `cpu` line of /proc/stat, all CPUs together, in clock ticks. */
export interface CpuTimes {
  total: number;
  idle: number;
  steal: number;
}

/** Reads the first `cpu ` line: user nice system idle iowait irq softirq steal (guest time is inside user). */
export function parseCpuTimes(stat: string): CpuTimes | undefined {
  const line = stat.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) return undefined;
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (f.length < 8 || f.some((n) => !Number.isFinite(n) || n < 0)) return undefined;
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
  return { total: user + nice + system + idle + iowait + irq + softirq + steal, idle: idle + iowait, steal };
}

export function cpuTimes(): CpuTimes | undefined {
  try {
    return parseCpuTimes(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return undefined;
  }
}

export interface CpuShares {
  stealPercent: number;
  busyPercent: number;
}

/** Steal and busy (neither idle nor iowait) as percentages of all CPU time between two readings. */
export function cpuShares(a: CpuTimes | undefined, b: CpuTimes | undefined): CpuShares | undefined {
  if (!a || !b) return undefined;
  const total = b.total - a.total;
  if (total <= 0) return undefined;
  const pct = (n: number) => Math.round((n / total) * 1000) / 10;
  return { stealPercent: pct(b.steal - a.steal), busyPercent: pct(total - (b.idle - a.idle)) };
}

/** The fixed work, once: serialise, parse and hash 10,000 heartbeat-sized bodies. Returns a checksum so nothing is optimised away. */
function probeWork(): number {
  let sum = 0;
  for (let i = 0; i < 10_000; i++) {
    const body = JSON.stringify({ version: '0.2.0', metrics: { cpuPercent: i % 100, memoryPercent: 42.5, uptimeSeconds: i * 5, load: [0.1, 0.2, 0.3] }, seq: i, agent: `ca-${i.toString(36).padStart(10, '0')}` });
    const parsed = JSON.parse(body) as { seq: number };
    sum += parsed.seq + createHash('sha256').update(body).digest()[0]!;
  }
  return sum;
}

/**
 * A walk of 500,000 dependent loads through a random cycle over 64 MiB, far beyond the caches:
 * what memory latency costs now (a host's neighbours share the caches and the memory bus, which
 * no steal figure shows). The cycle is made once, from a fixed seed.
 */
let cycle: Int32Array | undefined;
function memoryWork(): number {
  if (!cycle) {
    const n = (64 * 1024 * 1024) / 4;
    const order = new Int32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    let seed = 0x2545f491;
    for (let i = n - 1; i > 0; i--) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const j = seed % (i + 1);
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    cycle = new Int32Array(n);
    for (let i = 0; i < n; i++) cycle[order[i]!] = order[(i + 1) % n]!;
  }
  let at = 0;
  for (let i = 0; i < 500_000; i++) at = cycle[at]!;
  return at;
}

/** Milliseconds `work` takes here now: the median of nine runs after three to warm up (V8 optimises it by then). */
function median9(work: () => number): number {
  for (let i = 0; i < 3; i++) work();
  const times: number[] = [];
  for (let i = 0; i < 9; i++) {
    const t0 = process.hrtime.bigint();
    work();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((x, y) => x - y);
  return Math.round(times[4]! * 100) / 100;
}

/** The machine's speed now in ms, lower is faster: `cpu`, the server's kind of work; `memory`, its latency to memory. */
export interface SpeedProbe {
  cpu: number;
  memory: number;
}

/** Times both probes here now (~1.5 s). */
export function speedProbeMs(): SpeedProbe {
  return { cpu: median9(probeWork), memory: median9(memoryWork) };
}
