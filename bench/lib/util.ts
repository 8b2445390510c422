/** Small helpers shared by the benchmark's orchestrator and load generators. */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
/** Outside the work tree: the bench control plane's data (CA, database) and the issued identities. */
export const BENCH_CACHE = join(process.env.TETHER_CACHE ?? join(homedir(), '.cache', 'tether'), 'bench');

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Wall-clock milliseconds with sub-millisecond resolution (comparable across processes). */
export const nowMs = () => performance.timeOrigin + performance.now();

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export interface LatencySummary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export function summarize(values: number[]): LatencySummary {
  const s = [...values].sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 100) / 100;
  return { n: s.length, p50: r(percentile(s, 50)), p90: r(percentile(s, 90)), p99: r(percentile(s, 99)), max: r(s.at(-1) ?? NaN) };
}

/** Keeps at most `cap` samples (reservoir sampling), so long runs stay bounded in memory. */
export class Reservoir {
  readonly values: number[] = [];
  seen = 0;
  private readonly cap: number;
  constructor(cap = 200_000) {
    this.cap = cap;
  }
  add(v: number): void {
    this.seen++;
    if (this.values.length < this.cap) this.values.push(v);
    else {
      const j = Math.floor(Math.random() * this.seen);
      if (j < this.cap) this.values[j] = v;
    }
  }
}

/** CPU time (user+system, ms) and RSS (bytes) of one process, from /proc. */
export function procSample(pid: number): { cpuMs: number; rssBytes: number; at: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    const ticks = Number(fields[11]) + Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return { cpuMs: (ticks * 1000) / CLK_TCK, rssBytes: rssKb * 1024, at: Date.now() };
  } catch {
    return undefined;
  }
}
const CLK_TCK = 100;

/** Samples a process every `everyMs`: CPU % over the window and peak / last RSS. */
export class ProcWatcher {
  private timer: NodeJS.Timeout | undefined;
  private first: ReturnType<typeof procSample>;
  private last: ReturnType<typeof procSample>;
  peakRss = 0;
  readonly pid: number;
  constructor(pid: number, everyMs = 1000) {
    this.pid = pid;
    this.first = procSample(pid);
    this.last = this.first;
    this.timer = setInterval(() => {
      const s = procSample(pid);
      if (!s) return;
      this.last = s;
      this.peakRss = Math.max(this.peakRss, s.rssBytes);
    }, everyMs);
    this.timer.unref();
  }
  /** CPU % of one core since construction (or the last reset), RSS now and peak. */
  read(): { cpuPercent: number; rssBytes: number; peakRssBytes: number; seconds: number; cpuMs: number } {
    const s = procSample(this.pid) ?? this.last;
    const f = this.first;
    if (!s || !f) return { cpuPercent: NaN, rssBytes: NaN, peakRssBytes: this.peakRss, seconds: 0, cpuMs: NaN };
    this.peakRss = Math.max(this.peakRss, s.rssBytes);
    const secs = (s.at - f.at) / 1000;
    return { cpuPercent: secs > 0 ? Math.round(((s.cpuMs - f.cpuMs) / 10 / secs) * 10) / 10 : NaN, rssBytes: s.rssBytes, peakRssBytes: this.peakRss, seconds: secs, cpuMs: s.cpuMs - f.cpuMs };
  }
  reset(): void {
    this.first = procSample(this.pid);
    this.peakRss = this.first?.rssBytes ?? 0;
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

export const mb = (b: number) => Math.round((b / 1024 / 1024) * 10) / 10;

export function loadAverage(): number[] {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
  } catch {
    return [];
  }
}
