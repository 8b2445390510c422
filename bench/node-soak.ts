/**
 * `npm run bench -- --only node-soak [--duration 2h]`: the node agent idle for a long time. The
 * real daemon as deployed (`bin/tether-node register`, then `bin/tether-node agent`), alone in a
 * cluster of its own on a control plane of its own (a data folder under the run folder, so a soak
 * never shares a database with another bench run), in its own network and mount namespace (its
 * WireGuard interfaces and /var/run/wireguard stay there) whose only way out is a relay to a
 * counting TCP proxy, like figure 5.
 *
 * Every sample (every duration/240 s, at least 5 s): RSS and its anonymous/file split
 * (/proc/<pid>/status), PSS (/proc/<pid>/smaps_rollup), CPU time of the daemon and of its waited-for
 * children (/proc/<pid>/stat, 10 ms ticks; the daemon's also in ns from its threads' schedstat), and every 10th sample the V8 heap (used/total) from a Node
 * diagnostic report the daemon writes on SIGUSR2 (`--report-on-signal` through NODE_OPTIONS;
 * taken after the RSS of that sample, so a report never inflates the sample it belongs to). The
 * first report pages in Node's report code once: ~0.8 MiB more file-backed RSS for the rest of the
 * run (64.9 vs 64.0 MiB after 120 s, side by side, the anonymous part within 0.1 MiB), so the
 * soak's RSS is that much above an unobserved daemon's.
 * Samples are appended as JSON lines to `bench/results/node-soak-<date>.jsonl` while the soak
 * runs; the summary (RSS/PSS slope in MB per hour from a least-squares fit after the first 10 % of
 * the run, CPU %, CPU ms per heartbeat interval, bytes per hour) goes into the run's results.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, withNofile } from './lib/server.ts';
import { CountingProxy } from './lib/proxy.ts';
import { freePort } from './lib/net.ts';
import { run, stopAgentInNetns } from './lib/netns.ts';
import { REPO_ROOT, sleep } from './lib/util.ts';

export interface SoakContext {
  /** Seconds the daemon is measured after it settled. */
  seconds: number;
  runDir: string;
  log(s: string): void;
  row(figure: string, measure: string, value: string, target?: string, met?: boolean | null): void;
  results: Record<string, unknown>;
}

/** `2h`, `90m`, `600s` or a number of seconds. */
export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(h|m|s)?$/.exec(s.trim());
  if (!m) throw new Error(`--duration: "${s}" is not a duration (2h, 90m, 600s)`);
  return Math.round(Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1));
}

export interface SoakSample {
  t: number;
  rssMB: number;
  anonMB: number;
  fileMB: number;
  pssMB: number;
  pssAnonMB: number;
  cpuMs: number;
  /** The daemon's CPU time in ns, every thread's (/proc/<pid>/task/<tid>/schedstat): cpuMs counts 10 ms ticks. */
  cpuNs?: number;
  childCpuMs: number;
  bytes: number;
  heapUsedMB?: number;
  heapTotalMB?: number;
}

const MB = 1024 * 1024;
const r1 = (x: number) => Math.round(x * 10) / 10;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** Least-squares slope of y over x. */
export function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

function sample(pid: number, t: number, bytes: number): SoakSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (text: string, field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN) / 1024;
    return {
      t,
      rssMB: r1(kb(status, 'VmRSS')),
      anonMB: r1(kb(status, 'RssAnon')),
      fileMB: r1(kb(status, 'RssFile')),
      pssMB: r1(kb(rollup, 'Pss')),
      pssAnonMB: r1(kb(rollup, 'Pss_Anon')),
      // utime+stime, cutime+cstime (clock ticks of 10 ms)
      cpuMs: (Number(f[11]) + Number(f[12])) * 10,
      cpuNs: readdirSync(`/proc/${pid}/task`).reduce((a, tid) => a + Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]), 0),
      childCpuMs: (Number(f[13]) + Number(f[14])) * 10,
      bytes,
    };
  } catch {
    return undefined;
  }
}

/** The V8 heap from a diagnostic report (SIGUSR2), or undefined when none appeared within 5 s. */
async function heap(pid: number, reportDir: string): Promise<{ heapUsedMB: number; heapTotalMB: number } | undefined> {
  for (const f of readdirSync(reportDir)) rmSync(join(reportDir, f), { force: true });
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 50; i++) {
    await sleep(100);
    const f = readdirSync(reportDir).find((n) => n.endsWith('.json'));
    if (!f) continue;
    try {
      const rep = JSON.parse(readFileSync(join(reportDir, f), 'utf8')) as { javascriptHeap: { usedMemory: number; totalMemory: number } };
      return { heapUsedMB: r1(rep.javascriptHeap.usedMemory / MB), heapTotalMB: r1(rep.javascriptHeap.totalMemory / MB) };
    } catch {
      /* still being written */
    }
  }
  return undefined;
}

export async function nodeSoak(c: SoakContext): Promise<void> {
  const dir = join(c.runDir, 'node-soak');
  const reportDir = join(dir, 'reports');
  mkdirSync(reportDir, { recursive: true });
  const dataDir = join(dir, 'cp-data');
  const s = await startServer({ dataDir, port: await freePort(), logFile: join(dir, 'server.log'), env: { TETHER_LOG_LEVEL: 'warn' } });
  const proxy = new CountingProxy();
  const sock = join(dir, 'relay.sock');
  const relayPort = await freePort();
  await proxy.listen(s.port, [{ port: relayPort }, { path: sock }]);
  const date = new Date().toISOString().slice(0, 19).replace(/:/g, '-');
  const samplesFile = join(REPO_ROOT, 'bench/results', `node-soak-${date}.jsonl`);
  mkdirSync(join(REPO_ROOT, 'bench/results'), { recursive: true });
  let pid = 0;
  let netns = '';
  try {
    const cid = `soak${Date.now().toString(36)}`;
    await s.admin.request('POST', '/v1/clusters', { cid });
    const { aid } = (await s.admin.request<{ aid: string }>('GET', '/v1/whoami')).body;
    const { token } = (await s.admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: cid, role: 'node', controlPlane: false })).body;
    const config = join(dir, 'config.yaml');
    const cli = join(REPO_ROOT, 'bin/tether-node');
    await run(cli, ['register', '--token', token, '--aid', aid, '--control-plane', '0', '--server', `https://127.0.0.1:${relayPort}`, '--ca-file', join(dataDir, 'ca.crt'), '--config', config, '--name', 'soak1', '--wg0-interface', 'tswg0', '--wg1-interface', 'tswg1']);
    const script = [
      'set -e',
      'ip link set lo up',
      'mkdir -p /var/run/wireguard && mount -t tmpfs tmpfs /var/run/wireguard',
      `${process.execPath} ${join(REPO_ROOT, 'bench/forward.ts')} ${relayPort} ${sock} &`,
      'sleep 0.5',
      `exec ${withNofile(cli, ['agent', '--config', config]).flat().join(' ')}`,
    ].join('\n');
    const fd = openSync(join(dir, 'agent.log'), 'a');
    const nodeOptions = [process.env.NODE_OPTIONS, '--report-on-signal', '--report-signal=SIGUSR2', `--report-directory=${reportDir}`, '--report-compact'].filter(Boolean).join(' ');
    const child = spawn('unshare', ['--net', '--mount', '--propagation', 'private', '--', 'bash', '-c', script], {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, TETHER_LOG_LEVEL: 'info', NODE_OPTIONS: nodeOptions },
    });
    closeSync(fd);
    pid = child.pid!;
    const settle = 30;
    const every = Math.max(5, Math.round(c.seconds / 240));
    c.log(`node-soak: node agent pid ${pid} settling ${settle} s, then ${c.seconds} s sampled every ${every} s into ${samplesFile}`);
    await sleep(settle * 1000);
    netns = readlinkSync(`/proc/${pid}/ns/net`);
    proxy.reset();
    const t0 = Date.now();
    const samples: SoakSample[] = [];
    for (let i = 0; ; i++) {
      const t = (Date.now() - t0) / 1000;
      const smp = sample(pid, t, proxy.up + proxy.down);
      if (!smp) throw new Error(`the node agent (pid ${pid}) is gone after ${t} s`);
      if (i % 10 === 0) Object.assign(smp, await heap(pid, reportDir));
      samples.push(smp);
      appendFileSync(samplesFile, `${JSON.stringify(smp)}\n`);
      if (t >= c.seconds) break;
      await sleep(Math.min(every, c.seconds - t + 0.01) * 1000);
    }
    const agentLog = readFileSync(join(dir, 'agent.log'), 'utf8');
    const first = samples[0]!;
    const last = samples.at(-1)!;
    const secs = last.t - first.t;
    // The fit skips the first 10 % of the run (caches, lazily loaded code, the first full heartbeats).
    const fit = samples.filter((x) => x.t >= secs * 0.1);
    const hours = fit.map((x) => x.t / 3600);
    const heaps = samples.filter((x) => x.heapUsedMB !== undefined);
    const cpuMs = last.cpuMs - first.cpuMs;
    const childMs = last.childCpuMs - first.childCpuMs;
    const r = {
      seconds: Math.round(secs),
      sampleEverySeconds: every,
      samples: samples.length,
      samplesFile: samplesFile.slice(REPO_ROOT.length + 1),
      rssMB: { first: first.rssMB, last: last.rssMB, min: Math.min(...samples.map((x) => x.rssMB)), max: Math.max(...samples.map((x) => x.rssMB)), slopeMBPerHour: r3(slope(hours, fit.map((x) => x.rssMB))) },
      pssMB: { first: first.pssMB, last: last.pssMB, max: Math.max(...samples.map((x) => x.pssMB)), slopeMBPerHour: r3(slope(hours, fit.map((x) => x.pssMB))) },
      anonMB: { first: first.anonMB, last: last.anonMB, slopeMBPerHour: r3(slope(hours, fit.map((x) => x.anonMB))) },
      fileMB: last.fileMB,
      heapUsedMB: heaps.length ? { first: heaps[0]!.heapUsedMB, last: heaps.at(-1)!.heapUsedMB, max: Math.max(...heaps.map((x) => x.heapUsedMB!)) } : null,
      cpuPercent: r3((cpuMs / 10) / secs),
      cpuPercentWithChildren: r3(((cpuMs + childMs) / 10) / secs),
      // Idle CPU per 5 s heartbeat interval (one heartbeat, a fifth of a 25 s poll, timers).
      cpuMsPerHeartbeatInterval: r3((cpuMs + childMs) / (secs / 5)),
      // The daemon's own, in ns from every thread's schedstat (a 5-minute run is ~25 ticks of 10 ms).
      daemonCpuMsPerHeartbeatInterval: last.cpuNs !== undefined && first.cpuNs !== undefined ? r3((last.cpuNs - first.cpuNs) / 1e6 / (secs / 5)) : null,
      kbPerHour: Math.round(((last.bytes - first.bytes) * 3600) / secs / 1024),
      vpnSynchronised: agentLog.includes('VPN synchronised'),
    };
    c.results.nodeSoak = r;
    c.row('5 node agent soak', `idle RSS over ${r.seconds} s`, `${r.rssMB.first} → ${r.rssMB.last} MB (max ${r.rssMB.max}; PSS ${r.pssMB.last}), slope ${r.rssMB.slopeMBPerHour} MB/hour`, '≤ 55 MB, flat', r.rssMB.max <= 55);
    c.row('5 node agent soak', 'idle CPU', `${r.cpuPercent} % (${r.cpuPercentWithChildren} % with children), ${r.cpuMsPerHeartbeatInterval} ms per 5 s (the daemon's own ${r.daemonCpuMsPerHeartbeatInterval} ms)`, '< 0.5 %', r.cpuPercentWithChildren < 0.5);
    c.row('5 node agent soak', 'V8 heap used', r.heapUsedMB ? `${r.heapUsedMB.first} → ${r.heapUsedMB.last} MB (max ${r.heapUsedMB.max})` : 'no report');
  } finally {
    // Whatever else runs in the agent's namespace (the relay, wireguard-go) was started by this run.
    if (pid) await stopAgentInNetns(pid, netns);
    await proxy.close();
    await s.stop();
  }
}



/** One column of docs/performance.md's soak table (the `soak-table` marker) from a samples file. */
export function soakColumn(samples: SoakSample[], file: string): Record<string, string> {
  const first = samples[0]!;
  const last = samples.at(-1)!;
  const secs = last.t - first.t;
  const fit = samples.filter((x) => x.t >= secs * 0.1);
  const hours = fit.map((x) => x.t / 3600);
  // Means over the fitted window (after the first 10 %), minimum and maximum over every sample.
  const mean = (k: keyof SoakSample) => fit.reduce((a, x) => a + (x[k] as number), 0) / fit.length;
  const heaps = samples.flatMap((x) => (x.heapUsedMB === undefined ? [] : [x.heapUsedMB]));
  const cpu = last.cpuMs - first.cpuMs;
  const child = last.childCpuMs - first.childCpuMs;
  const sign = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;
  return {
    'samples file': `\`${file}\``,
    'soak length': `${Math.round(secs / 60)} min (${samples.length} samples)`,
    'RSS mean (min–max)': `${mean('rssMB').toFixed(1)} (${Math.min(...samples.map((x) => x.rssMB))}–${Math.max(...samples.map((x) => x.rssMB))}) MiB`,
    'RSS slope, least squares after the first 10 %': `${sign(slope(hours, fit.map((x) => x.rssMB)))} MiB/hour`,
    'anonymous / file-backed (mean)': `${mean('anonMB').toFixed(1)} / ${mean('fileMB').toFixed(1)} MiB`,
    'PSS mean (slope)': `${mean('pssMB').toFixed(1)} MiB (${sign(slope(hours, fit.map((x) => x.pssMB)))}/hour)`,
    'V8 heap used (min–max)': heaps.length ? `${Math.min(...heaps)}–${Math.max(...heaps)} MiB` : '–',
    'CPU: daemon / with its children': `${(cpu / 10 / secs).toFixed(3)} % / ${((cpu + child) / 10 / secs).toFixed(3)} %`,
    'CPU per 5 s heartbeat interval: daemon / with children': `${(cpu / (secs / 5)).toFixed(2)} / ${((cpu + child) / (secs / 5)).toFixed(2)} ms`,
    'daemon CPU per 5 s interval, every thread (schedstat)': last.cpuNs !== undefined && first.cpuNs !== undefined ? `${((last.cpuNs - first.cpuNs) / 1e6 / (secs / 5)).toFixed(2)} ms` : '–',
    'bytes on the wire': `${Math.round(((last.bytes - first.bytes) * 3600) / secs / 1024)} KB/hour`,
  };
}

// `node bench/node-soak.ts table '<heading>=bench/results/node-soak-….jsonl' …`: the soak table's rows, one column per file.
if (import.meta.main && process.argv[2] === 'table') {
  const cols = process.argv.slice(3).map((a) => {
    const i = a.lastIndexOf('=');
    const file = a.slice(i + 1);
    const samples = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as SoakSample);
    return { heading: a.slice(0, i), rows: soakColumn(samples, file.split('/').pop()!) };
  });
  const out = [`| | ${cols.map((c) => c.heading).join(' | ')} |`, `|---|${cols.map(() => '---|').join('')}`];
  for (const row of Object.keys(cols[0]!.rows)) out.push(`| ${row} | ${cols.map((c) => c.rows[row]).join(' | ')} |`);
  console.log(out.join('\n'));
}
