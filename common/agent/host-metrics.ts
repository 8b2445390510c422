/**
 * Host metrics for heartbeats: CPU (since the last sample), memory, disk, load, uptime, own RSS.
 * Heartbeats carry only the fields that changed, so sizes are in whole MiB, load in hundredths and
 * uptime in whole minutes: an idle host's figures then stay put between most beats.
 */
import os from 'node:os';
import { statfsSync } from 'node:fs';
import type { AgentMetrics } from '../wire.ts';

export function hostMetricsCollector(diskPath = '/'): () => AgentMetrics {
  let last = cpuTimes();
  return () => {
    const now = cpuTimes();
    const idle = now.idle - last.idle;
    const total = now.total - last.total;
    last = now;
    let disk: Pick<AgentMetrics, 'diskTotalBytes' | 'diskUsedBytes'> = {};
    try {
      const s = statfsSync(diskPath);
      disk = { diskTotalBytes: mib(s.blocks * s.bsize), diskUsedBytes: mib((s.blocks - s.bfree) * s.bsize) };
    } catch {
      /* no disk figures */
    }
    return {
      cpuPercent: total > 0 ? Math.round((1 - idle / total) * 1000) / 10 : 0,
      memoryTotalBytes: mib(os.totalmem()),
      memoryUsedBytes: mib(os.totalmem() - os.freemem()),
      ...disk,
      load: os.loadavg().map((l) => Math.round(l * 100) / 100),
      uptimeSeconds: Math.floor(os.uptime() / 60) * 60,
      rssBytes: mib(process.memoryUsage.rss()),
    };
  };
}

const MIB = 1024 * 1024;
/** Rounded down to a whole MiB (still in bytes). */
const mib = (bytes: number) => Math.floor(bytes / MIB) * MIB;

function cpuTimes() {
  let idle = 0;
  let total = 0;
  for (const c of os.cpus()) {
    idle += c.times.idle;
    total += c.times.user + c.times.nice + c.times.sys + c.times.idle + c.times.irq;
  }
  return { idle, total };
}
