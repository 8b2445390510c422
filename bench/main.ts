/**
 * `npm run bench [-- --quick] [flags]`: measures the control plane and the agents against the
 * performance goals (docs/performance.md). Starts `tether server` as its own process, load
 * generators as forked processes acting as agents over real mTLS, the real node-agent daemon,
 * and the storage layer directly; prints a table and writes bench/results/<date>.json.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pinSelf, PINNING, allowedCpus, type Pinning } from './lib/pin.ts';
import { startServer, metric, NOFILE, NOFILE_WANTED, withNofile, type BenchServer } from './lib/server.ts';
import { ensureIdentities, identityDir, clusterOf } from './lib/identities.ts';
import { Fleet, parseLoadgenKind } from './lib/fleet.ts';
import type { LoadgenStats } from './loadgen.ts';
import { lastFinished, waitApplied } from './lib/applied.ts';
import { CountingProxy } from './lib/proxy.ts';
import { AcceptQueueWatch, freePort, type AcceptQueueSummary } from './lib/net.ts';
import { cpuShares, cpuTimes, speedProbeMs, type CpuShares, type SpeedProbe } from './lib/machine.ts';
import { run, stopAgentInNetns } from './lib/netns.ts';
import { BENCH_CACHE, REPO_ROOT, ProcWatcher, loadAverage, mb, nowMs, procSample, sleep, summarize, type LatencySummary } from './lib/util.ts';
import { HttpClient } from '../common/http-client.ts';
import { hostile } from './hostile.ts';
import { cliBench } from './cli.ts';
import { driftBench } from './drift.ts';
import { Targets } from './lib/targets.ts';
import { nodeSoak, parseDuration } from './node-soak.ts';
import { LONG_POLL_SECONDS } from '../common/agent-wire.ts';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    held: { type: 'string' },
    'dispatch-agents': { type: 'string' },
    'dispatch-commands': { type: 'string' },
    'throughput-commands': { type: 'string' },
    'storm-agents': { type: 'string' },
    'storm-commands': { type: 'string' },
    'footprint-seconds': { type: 'string' },
    'storage-seconds': { type: 'string' },
    'hostile-agents': { type: 'string' },
    'hostile-seconds': { type: 'string' },
    'backup-commands': { type: 'string' },
    window: { type: 'string' },
    'per-process': { type: 'string' },
    'cli-runs': { type: 'string' },
    'cpu-prof': { type: 'boolean', default: false },
    'server-node-args': { type: 'string' },
    'ramp-rate': { type: 'string' },
    'poll-wait': { type: 'string' }, // seconds each simulated agent asks a poll to be held (default 50, the agents'); also the server's --long-poll-seconds
    'server-log-level': { type: 'string' },
    note: { type: 'string' },
    'drift-instances': { type: 'string' },
    'drift-interval-seconds': { type: 'string' },
    durability: { type: 'string' },
    database: { type: 'string' },
    duration: { type: 'string' },
    replicas: { type: 'string' },
    loadgen: { type: 'string' }, // go (bench/loadgen-go/, the default) | node (bench/loadgen.ts) // --only replicas: agents=500,commands=5000,dispatch=500,window=30,pg-durable=on|off,setups=sqlite+pg1+pg2 (bench/replicas.ts)
  },
  allowPositionals: false,
});

// --database postgres://… (or TETHER_DATABASE_URL): the server runs on PostgreSQL, with a data
// folder of its own per database (its cached agent identities live in that database).
const databaseUrl = flags.database ?? (process.env.TETHER_DATABASE_URL || undefined);
if (databaseUrl) process.env.TETHER_DATABASE_URL = databaseUrl;
/** Passwords out of what the results file records. */
const redactUrls = (s: string) => s.replace(/(postgres(?:ql)?:\/\/[^:@/\s]*:)[^@\s]*@/gi, '$1***@');

const quick = flags.quick!;
/** Which load generator simulates the agents (bench/lib/fleet.ts). */
const loadgen = parseLoadgenKind(flags.loadgen);
const list = (s: string | undefined, d: number[]) => (s ? s.split(',').map((x) => Number(x.trim())) : d);
const num = (s: string | undefined, d: number) => (s === undefined ? d : Number(s));
const cfg = {
  held: list(flags.held, quick ? [1000] : [1000, 5000, 10000, 20000]),
  dispatchAgents: num(flags['dispatch-agents'], 1000),
  dispatchCommands: num(flags['dispatch-commands'], quick ? 200 : 1000),
  throughputCommands: num(flags['throughput-commands'], quick ? 3000 : 20000),
  stormAgents: num(flags['storm-agents'], quick ? 500 : 10000),
  stormCommands: num(flags['storm-commands'], quick ? 200 : 1000),
  footprintSeconds: num(flags['footprint-seconds'], quick ? 25 : 600),
  storageSeconds: num(flags['storage-seconds'], quick ? 2 : 10),
  backupCommands: num(flags['backup-commands'], quick ? 5000 : 50000),
  window: num(flags.window, quick ? 10 : 60),
  perProcess: num(flags['per-process'], 2500),
  hostileAgents: num(flags['hostile-agents'], 1000),
  hostileSeconds: num(flags['hostile-seconds'], quick ? 20 : 60),
  cliRuns: num(flags['cli-runs'], quick ? 5 : 10),
  /** The agents' default hold (LONG_POLL_SECONDS); with --poll-wait the servers are started with it as --long-poll-seconds. */
  pollWait: num(flags['poll-wait'], LONG_POLL_SECONDS),
};
const scenarios = new Set((flags.only ?? 'held,dispatch,throughput,storm,footprint,storage,cli').split(','));
if (flags['server-log-level']) process.env.BENCH_SERVER_LOG_LEVEL = flags['server-log-level'];
// --durability full|normal: the control plane's (env TETHER_DURABILITY, which an older server ignores).
if (flags.durability) process.env.TETHER_DURABILITY = flags.durability;
/** What the measured control plane said at start (the first one started in this run). */
let durability: BenchServer['durability'] | undefined;

const runId = new Date().toISOString().replace(/[:.]/g, '-');
const runDir = join(BENCH_CACHE, 'runs', runId);
mkdirSync(runDir, { recursive: true });
const dataDir = join(BENCH_CACHE, databaseUrl ? `cp-data-pg-${createHash('sha256').update(databaseUrl).digest('hex').slice(0, 12)}` : 'cp-data');
const log = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
/** One socket per agent (HTTP/2: the held long-poll, heartbeats and results share it), plus room for the server's own files. */
const maxAgents = NOFILE - 64;

const results: Record<string, unknown> = {};
const rows: { figure: string; measure: string; value: string; target?: string; met?: boolean | null }[] = [];
const row = (figure: string, measure: string, value: string, target?: string, met?: boolean | null) => rows.push({ figure, measure, value, target, met });
/** Every target of docs/performance.md this run measured, met or not (results JSON `targets`, and printed). */
const targets = new Targets();

const serverNodeArgs = (name: string) => [...(flags['server-node-args']?.split(/\s+/).filter(Boolean) ?? []), ...(flags['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${join(runDir, `prof-${name}`)}`] : [])];

async function server(name: string, extra: string[] = [], port?: number): Promise<BenchServer> {
  const pollArgs = flags['poll-wait'] ? ['--long-poll-seconds', String(cfg.pollWait)] : [];
  const s = await startServer({ dataDir, port: port ?? (await freePort()), logFile: join(runDir, `server-${name}.log`), extraArgs: [...pollArgs, ...extra], nodeArgs: serverNodeArgs(name) });
  durability ??= s.durability;
  if (PINNING) {
    const on = allowedCpus(s.pid);
    if (on !== PINNING.server) throw new Error(`the control plane runs on CPUs ${on}, not ${PINNING.server} as BENCH_PIN=split asks`);
  }
  return s;
}

async function identities(s: BenchServer, n: number) {
  return ensureIdentities({ url: s.url, caPem: s.caPem, admin: s.admin, count: n, log });
}

async function fleet(s: BenchServer, agents: number, mode: 'ack' | 'hold', rampMs: number) {
  return Fleet.start({ url: s.url, caPem: s.caPem, identityDir: identityDir(s.caPem), agents, perProcess: cfg.perProcess, heartbeatMs: 5000, pollWaitSeconds: cfg.pollWait, rampMs, mode, localAddresses: 8, loadgen });
}

/** Agents connect at --ramp-rate per second, 200 by default, at most 100 above 10,000 agents (each a full TLS handshake with RSA signatures on both sides, all on these 2 cores). */
const rampRate = num(flags['ramp-rate'], 200);
const rampFor = (n: number) => Math.max(5000, Math.round((n / (n > 10_000 ? Math.min(rampRate, 100) : rampRate)) * 1000));

// ------------------------------------------------------------------ 1. held agents

/** Which malloc the control plane runs on, from the libraries it has mapped. */
function serverAllocator(pid: number): 'mimalloc' | 'jemalloc' | 'glibc' | 'unknown' {
  try {
    const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
    return maps.includes('libmimalloc') ? 'mimalloc' : maps.includes('libjemalloc') ? 'jemalloc' : 'glibc';
  } catch {
    return 'unknown';
  }
}

async function held(n: number) {
  if (n > maxAgents) {
    log(`held ${n}: skipped, needs ${n} sockets plus its own files in the control plane and its open-files limit is ${NOFILE}`);
    results[`held_${n}`] = { skipped: `open-files hard limit ${NOFILE} (cannot be raised here) < ${n} sockets + the server's files` };
    row('1 held agents', `N=${n}`, `not run: ${n} sockets + files > open-files limit ${NOFILE}`);
    return undefined;
  }
  const s = await server(`held-${n}`);
  const w = new ProcWatcher(s.pid);
  const aq = new AcceptQueueWatch(s.port);
  try {
    await identities(s, n);
    await sleep(2000);
    const base = procSample(s.pid)!;
    const ramp = rampFor(n);
    log(`held ${n}: connecting over ${ramp / 1000} s ...`);
    const f = await fleet(s, n, 'hold', ramp);
    try {
      const c = await f.waitConnected(ramp + 60_000, log);
      await sleep(10_000);
      const gc0 = (await f.stats(true)).gc;
      w.reset();
      const lg0 = f.cpuMs();
      log(`held ${n}: measuring for ${cfg.window} s`);
      await sleep(cfg.window * 1000);
      const st = await f.stats(true);
      const p = w.read();
      const loadgenCpuMs = f.cpuMs() - lg0;
      const heldPolls = await metric(s, 'tether_long_polls_held');
      // Per agent = per connection the server actually holds (an overloaded run may not have all N).
      const connections = (await metric(s, 'tether_connections', 'protocol="http2"')) || n;
      const hb = summarize(st.hbLatency);
      const perAgent = (p.rssBytes - base.rssBytes) / connections;
      if (connections < n * 0.98) log(`held ${n}: only ${connections} agents connected; per-agent figures are per connected agent`);
      const r = {
        agents: n,
        // The control plane's malloc (bin/tether preloads mimalloc when installed; TETHER_MALLOC=system: glibc's).
        allocator: serverAllocator(s.pid),
        connected: c.connected,
        connections,
        heldPolls,
        baselineRssMB: mb(base.rssBytes),
        rssMB: mb(p.rssBytes),
        peakRssMB: mb(p.peakRssBytes),
        rssPerAgentKB: Math.round(perAgent / 1024),
        rssPerConnectionKB: Math.round(perAgent / 1024),
        cpuPercent: p.cpuPercent,
        heartbeatsPerSecond: Math.round(st.hbOk / p.seconds),
        // The server's own CPU time (utime+stime from /proc) per heartbeat answered, the held polls'
        // re-polls included: unlike latencies, it does not depend on the load generators' share of the cores.
        serverCpuMsPerHeartbeat: Math.round(((p.cpuPercent * 10) / (st.hbOk / p.seconds)) * 1000) / 1000,
        heartbeatErrors: st.hbErr,
        heartbeatLatencyMs: hb,
        // The load generators' own CPU time (utime+stime) per heartbeat answered: what simulating the agents costs.
        loadgen,
        loadgenCpuMsPerHeartbeat: st.hbOk > 0 ? Math.round((loadgenCpuMs / st.hbOk) * 1000) / 1000 : NaN,
        loadgenCpuPercent: Math.round((loadgenCpuMs / (p.seconds * 1000)) * 1000) / 10,
        loadgenGc: loadgenGc(gc0, st.gc),
        loadAverage: loadAverage(),
        errors: st.errors,
        // The server's accept queue from its start to here (a server that falls behind accepts one connection per pass).
        acceptQueue: aq.stop(),
      };
      results[`held_${n}`] = r;
      row('1 held agents', `N=${n} RSS (per agent / per conn)`, `${r.rssMB} MB (${r.rssPerAgentKB} KB / ${r.rssPerConnectionKB} KB; ${r.allocator})${connections < n * 0.98 ? `, only ${connections} connected` : ''}`);
      row('1 held agents', `N=${n} CPU, heartbeats/s`, `${r.cpuPercent} % of a core, ${r.heartbeatsPerSecond}/s (${r.serverCpuMsPerHeartbeat} ms server CPU per heartbeat)`);
      row('1 held agents', `N=${n} load generator (${loadgen})`, `${r.loadgenCpuPercent} % of a core, ${r.loadgenCpuMsPerHeartbeat} ms CPU per heartbeat`);
      row('1 held agents', `N=${n} heartbeat latency`, `p50 ${hb.p50} ms, p99 ${hb.p99} ms (${st.hbErr} errors, ${heldPolls} polls held)`);
      return r;
    } finally {
      await f.stop();
    }
  } catch (err) {
    // A failed run says what the server's accept queue did (docs/performance.md, "The 20,000-agent ramp that locks out its operator").
    throw Object.assign(err as Error, { acceptQueue: aq.stop() });
  } finally {
    aq.stop();
    w.stop();
    await s.stop();
  }
}

// ------------------------------------------------------------------ 2 + 3. dispatch and throughput

const manifest = { manifests: 'apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n' };

/**
 * The Go load generator's own GC between two of its reports (null from the Node one), with
 * GOGC as it ran: its mark assists stall the very goroutines whose latency the bench measures.
 */
function loadgenGc(a: LoadgenStats['gc'], b: LoadgenStats['gc']) {
  if (!a || !b) return null;
  const r = (x: number) => Math.round(x * 10) / 10;
  return { gogc: process.env.GOGC || process.env.GOMEMLIMIT ? `GOGC=${process.env.GOGC ?? ''} GOMEMLIMIT=${process.env.GOMEMLIMIT ?? ''}` : 'off, GOMEMLIMIT=6GiB (bench/lib/fleet.ts)', cycles: b.cycles - a.cycles, cpuMs: r(b.cpuMs - a.cpuMs), assistCpuMs: r(b.assistCpuMs - a.assistCpuMs), heapLiveMB: r(b.heapLiveMB) };
}

/** Environment variables of the control plane and the Go load generator whose values the results record. */
const MEASURED_ENV = ['BENCH_PIN', 'TETHER_SQLITE_CHECKPOINT', 'TETHER_GC_THREADS_NICE', 'TETHER_MALLOC', 'TETHER_AGENT_RATE_LIMITS', 'GOGC', 'GOMEMLIMIT', 'GOMAXPROCS', 'BENCH_AGENT_EXTRA_HEADERS', 'BENCH_ADMIN_LISTEN'];

/** A claim later than this (submit → the agent has it) is listed on its own in the dispatch results. */
const LATE_CLAIM_MS = 100;

/**
 * Where the late claims lost their time: the server's own record of each (created → claimed, from
 * GET /v1/commands/:id) against the agent's (submitted → received). A claim the server made in time
 * but the agent received late was late on its way (the answer, the connection, the load generator);
 * one the server made late waited for a poll. Also when they were submitted: together, or spread.
 */
async function lateClaims(c: HttpClient, late: { id: number; at: number; ms: number }[], start: number) {
  const rows: { id: number; atS: number; ms: number; serverMs: number | null; receivedAt: number }[] = [];
  for (const l of late.slice(0, 200)) {
    const v = (await c.request<{ createdAt: string; claimedAt: string | null }>('GET', `/v1/commands/${l.id}`)).body;
    const serverMs = v.claimedAt === null ? null : Date.parse(v.claimedAt) - Date.parse(v.createdAt);
    // receivedAt: wall-clock ms, as bench/held-probe.ts stamps the server's answers (its -answers.jsonl).
    rows.push({ id: l.id, atS: Math.round((l.at - start) / 100) / 10, ms: Math.round(l.ms), serverMs, receivedAt: Math.round(l.at + l.ms) });
  }
  rows.sort((a, b) => a.atS - b.atS);
  return {
    /** When the first command was submitted (the rows' atS count from it). */
    startedAt: new Date(start).toISOString(),
    count: late.length,
    claimedLateByServer: rows.filter((r) => r.serverMs !== null && r.serverMs > LATE_CLAIM_MS).length,
    firstAtS: rows[0]?.atS ?? null,
    lastAtS: rows.at(-1)?.atS ?? null,
    rows,
  };
}

async function dispatchAndThroughput() {
  const n = Math.min(cfg.dispatchAgents, maxAgents);
  const s = await server('dispatch');
  const w = new ProcWatcher(s.pid);
  const submitters = Array.from({ length: 4 }, () => new HttpClient({ baseUrl: s.url, ca: s.caPem, bearerToken: s.adminToken, timeoutMs: 60_000 }));
  try {
    await identities(s, n);
    const f = await fleet(s, n, 'ack', rampFor(n));
    try {
      await f.waitConnected(rampFor(n) + 60_000, log);
      await sleep(3000);
      const gc0 = (await f.stats(true)).gc;
      const submit = (c: HttpClient, i: number) => c.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: clusterOf(i) }, type: 'manifest', spec: manifest, maxAttempts: 3 });

      if (scenarios.has('dispatch')) {
        log(`dispatch: ${cfg.dispatchCommands} commands, one at a time every 20 ms, to random agents of ${n} waiting`);
        const sent = new Map<number, number>();
        // The group commit's WAL syncs over the scenario (0 where a commit is durable itself; NaN, null in the JSON, from a server without the counter).
        const syncs0 = await metric(s, 'tether_durability_syncs_total').catch(() => NaN);
        w.reset();
        const lg0 = f.cpuMs();
        for (let k = 0; k < cfg.dispatchCommands; k++) {
          const t0 = nowMs();
          const { id } = (await submit(submitters[0]!, Math.floor(Math.random() * n))).body;
          sent.set(id, t0);
          await sleep(20);
        }
        await sleep(2000);
        const p = w.read();
        const syncs = (await metric(s, 'tether_durability_syncs_total').catch(() => NaN)) - syncs0;
        const st = await f.stats(true);
        const lat: number[] = [];
        const lateIds: { id: number; at: number; ms: number }[] = [];
        const start = Math.min(...sent.values());
        for (const c of st.claims) {
          const t0 = sent.get(c.id);
          if (t0 === undefined) continue;
          lat.push(c.at - t0);
          if (c.at - t0 > LATE_CLAIM_MS) lateIds.push({ id: c.id, at: t0, ms: c.at - t0 });
        }
        const d = summarize(lat);
        const late = await lateClaims(submitters[0]!, lateIds, start);
        results.dispatch = { agents: n, commands: cfg.dispatchCommands, claimed: lat.length, submitToClaimMs: d, late, walSyncsPerCommand: Math.round((syncs / cfg.dispatchCommands) * 100) / 100, cpuPercent: p.cpuPercent, rssMB: mb(p.rssBytes), loadgen, loadgenCpuPercent: Math.round(((f.cpuMs() - lg0) / (p.seconds * 1000)) * 1000) / 10, loadgenGc: loadgenGc(gc0, st.gc), loadAverage: loadAverage() };
        if (late.count > 0) row('2 dispatch', `claims later than ${LATE_CLAIM_MS} ms`, `${late.count}: ${late.claimedLateByServer} claimed late by the server, the rest answered late; submitted from ${late.firstAtS} s to ${late.lastAtS} s of the run`);
        row('2 dispatch', `submit → claim, ${n} agents waiting`, `p50 ${d.p50} ms, p99 ${d.p99} ms (${lat.length}/${cfg.dispatchCommands} claimed)`, 'p50 ≤ 5 ms, p99 ≤ 25 ms', d.p50 <= 5 && d.p99 <= 25 && lat.length === cfg.dispatchCommands);
        const all = lat.length === cfg.dispatchCommands;
        targets.add({ name: `submit → claim p50, ${n} agents`, value: d.p50, unit: 'ms', comparison: '<=', target: 5, conditionsMet: all, ...(all ? {} : { note: `${lat.length}/${cfg.dispatchCommands} claimed` }) });
        targets.add({ name: `submit → claim p99, ${n} agents`, value: d.p99, unit: 'ms', comparison: '<=', target: 25, conditionsMet: all });
        targets.add({ name: 'submit → claim p99, 10,000 agents held', value: d.p99, unit: 'ms', comparison: '<=', target: 10, conditionsMet: all && n >= 10_000, ...(n >= 10_000 ? {} : { note: `measured with ${n} agents (--dispatch-agents 10000)` }) });
      }

      if (scenarios.has('throughput')) {
        const m = cfg.throughputCommands;
        log(`throughput: ${m} commands across ${n} agents (64 submitters)`);
        const before = await metric(s, 'tether_commands', 'state="succeeded"');
        const syncs0 = await metric(s, 'tether_durability_syncs_total').catch(() => NaN);
        await f.stats(true);
        // The server's CPU with the agents held and nothing submitted (their heartbeats and re-polls),
        // per second, is subtracted below: a slower run (a loaded machine) has more of it per command.
        w.reset();
        await sleep(5000);
        const idle = w.read();
        const idleCpuMsPerSecond = idle.seconds > 0 ? idle.cpuMs / idle.seconds : NaN;
        await f.stats(true); // the request counts from here
        const loadBefore = loadAverage();
        w.reset();
        const lg0 = f.cpuMs();
        const t0 = nowMs();
        let next = 0;
        let submitted = 0;
        const subLat: number[] = [];
        let minId = Number.POSITIVE_INFINITY;
        let maxId = 0;
        const workers = Array.from({ length: 64 }, async (_, k) => {
          while (next < m) {
            next++;
            const a = nowMs();
            const { id } = (await submit(submitters[k % submitters.length]!, Math.floor(Math.random() * n))).body;
            minId = Math.min(minId, id);
            maxId = Math.max(maxId, id);
            subLat.push(nowMs() - a);
            submitted++;
          }
        });
        await Promise.all(workers);
        const tSubmitted = nowMs();
        let counts: { pollOk: number; pollErr: number; resultRequests: number; resultNext: number } = { pollOk: 0, pollErr: 0, resultRequests: 0, resultNext: 0 };
        const w8 = await waitApplied({
          m,
          deadlineMs: 300_000,
          poll: async () => (counts = await f.stats(false)), // the counters run from the reset above
          succeeded: async () => (await metric(s, 'tether_commands', 'state="succeeded"')) - before,
        });
        const p = w.read();
        const lgCpuMs = f.cpuMs() - lg0;
        const after = await metric(s, 'tether_commands', 'state="succeeded"');
        const syncs = (await metric(s, 'tether_durability_syncs_total').catch(() => NaN)) - syncs0;
        // When the last of them was applied, as the control plane recorded it (bench/lib/applied.ts).
        const fin = await lastFinished(submitters[0]!, minId, maxId);
        const agentElapsed = (Math.max(t0, w8.lastAnswered) - t0) / 1000;
        const elapsed = (Math.max(t0, fin.lastFinishedAt) - t0) / 1000;
        const done = fin.applied;
        const rate = Math.round(done / elapsed);
        // The server's own utime+stime per applied command: the figure that does not depend on the load generators' share of the cores.
        const cpuMsPerCommand = done > 0 ? Math.round((p.cpuMs / done) * 1000) / 1000 : NaN;
        const netCpuMsPerCommand = done > 0 ? Math.round(((p.cpuMs - idleCpuMsPerSecond * p.seconds) / done) * 1000) / 1000 : NaN;
        results.throughput = {
          agents: n,
          commands: m,
          submitted,
          resultsApplied: done,
          durableSucceeded: after - before,
          seconds: Math.round(elapsed * 100) / 100,
          // Until the agents had the answers they got by then (the figure before result?next; with it, the last answers wait out a hold).
          agentsAnswered: w8.answered,
          agentAnsweredSeconds: Math.round(agentElapsed * 100) / 100,
          commandsPerSecond: rate,
          submitPhaseSeconds: Math.round(((tSubmitted - t0) / 1000) * 100) / 100,
          submitLatencyMs: summarize(subLat),
          cpuPercent: p.cpuPercent,
          serverCpuMsPerCommand: cpuMsPerCommand,
          serverIdleCpuMsPerSecond: Math.round(idleCpuMsPerSecond * 10) / 10,
          serverCpuMsPerCommandNet: netCpuMsPerCommand,
          walSyncsPerCommand: done > 0 ? Math.round((syncs / done) * 100) / 100 : NaN,
          rssMB: mb(p.rssBytes),
          // The load generators' own CPU over the same window (% of one core; the machine has cpus().length).
          loadgen,
          loadgenCpuPercent: Math.round((lgCpuMs / (p.seconds * 1000)) * 1000) / 10,
          loadgenCpuMsPerCommand: done > 0 ? Math.round((lgCpuMs / done) * 1000) / 1000 : NaN,
          // The agents' results claim the next command in the same request (result?next=N) unless
          // BENCH_AGENT_RESULT_NEXT=0; requests per command: polls and results sent (heartbeats apart).
          resultNext: process.env.BENCH_AGENT_RESULT_NEXT !== '0',
          resultNextAnswers: counts.resultNext,
          pollRequests: counts.pollOk + counts.pollErr,
          resultRequests: counts.resultRequests,
          requestsPerCommand: done > 0 ? Math.round(((counts.pollOk + counts.pollErr + counts.resultRequests) / done) * 1000) / 1000 : NaN,
          loadAverageBefore: loadBefore,
          loadAverage: loadAverage(),
        };
        row('3 throughput', `end-to-end, ${n} agents`, `${rate} commands/s (${done}/${m} applied, ${after - before} durable succeeded) at ${p.cpuPercent} % CPU, ${cpuMsPerCommand} ms server CPU per command (${netCpuMsPerCommand} ms above the idle agents' ${Math.round(idleCpuMsPerSecond)} ms/s), ${(results.throughput as { requestsPerCommand: number }).requestsPerCommand} agent requests per command`, '≥ 2,000 commands/s', rate >= 2000 && after - before >= m);
        targets.add({ name: 'commands end to end', value: rate, unit: 'commands/s', comparison: '>=', target: 2000, conditionsMet: after - before >= m, ...(after - before >= m ? {} : { note: `${after - before}/${m} durable succeeded` }) });
      }
    } finally {
      await f.stop();
    }
  } finally {
    for (const c of submitters) c.close();
    w.stop();
    await s.stop();
  }
}

// ------------------------------------------------------------------ 4. reconnect storm

/**
 * A process's CPU (utime + stime, ms) by thread name (the main thread, `V8Worker`: GC marking and
 * compiling helpers, libuv's pool): where the recovery's CPU goes, which a main-thread profile does not see.
 */
function threadCpuMs(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out; // the process ended
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(name, (out.get(name) ?? 0) + ((Number(f[11]) + Number(f[12])) * 1000) / 100);
    } catch {
      /* the thread ended */
    }
  }
  return out;
}

/** The CPU each thread name used between two samples, in ms. */
function threadCpuDelta(a: Map<string, number>, b: Map<string, number>): Record<string, number> {
  const d: Record<string, number> = {};
  for (const [name, ms] of b) {
    const v = Math.round(ms - (a.get(name) ?? 0));
    if (v > 0) d[name] = v;
  }
  return d;
}

async function storm() {
  let n = cfg.stormAgents;
  if (n > maxAgents) {
    log(`storm: ${n} agents need ${n} sockets plus the server's files; the open-files limit is ${NOFILE}: running with ${maxAgents}`);
    n = maxAgents;
  }
  let s = await server('storm-1');
  await identities(s, n);
  const f = await fleet(s, n, 'ack', rampFor(n));
  try {
    await f.waitConnected(rampFor(n) + 90_000, log);
    // The server's CPU with every agent held and heartbeating, to set the recovery's against.
    const steady0 = procSample(s.pid);
    await sleep(5000);
    const steady1 = procSample(s.pid);
    const steadyCpuPercent = steady0 && steady1 ? Math.round(((steady1.cpuMs - steady0.cpuMs) / (steady1.at - steady0.at)) * 1000) / 10 : NaN;
    await f.stats(true);
    // Commands accepted (202: durable) right before the restart, some still queued, some claimed in flight.
    const ids: number[] = [];
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (ids.length < cfg.stormCommands) {
          ids.push(-1);
          const { id } = (await s.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: clusterOf(Math.floor(Math.random() * n)) }, type: 'manifest', spec: manifest })).body;
          ids[ids.indexOf(-1)] = id;
        }
      }),
    );
    log(`storm: ${ids.length} commands submitted; restarting the control plane under ${n} agents`);
    // Counters from here on are the storm's: attempts, failures and handshakes of the recovery.
    const tlsBefore = await f.stats(true);
    await f.mark();
    const t0 = nowMs();
    const port = s.port;
    await s.stop('SIGTERM');
    const tDown = nowMs();
    s = await server('storm-2', [], port);
    const tUp = nowMs();
    log(`storm: down in ${Math.round(tDown - t0)} ms, up again after ${Math.round(tUp - t0)} ms`);
    const w = new ProcWatcher(s.pid);
    const lgUp = f.cpuMs();
    // The new server's own CPU (utime+stime) from serving to all polling: what each returning agent costs it, whatever the load generators get.
    const cpuUp = procSample(s.pid);
    const threadsUp = threadCpuMs(s.pid);
    let threadsAllPolled: Map<string, number> | undefined;
    let cpuAllPolled: ReturnType<typeof procSample>;
    let allPolled = NaN;
    let heldMax = 0;
    /** Polls held by the new server, about once a second after the restart: how the returns kept up with the drain's plan. */
    const timeline: { s: number; held: number }[] = [];
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const held = await metric(s, 'tether_long_polls_held').catch(() => NaN);
      heldMax = Math.max(heldMax, held || 0);
      const at = Math.round((nowMs() - t0) / 100) / 10;
      if (!timeline.length || at - timeline.at(-1)!.s >= 1) timeline.push({ s: at, held: held || 0 });
      if (held >= n) {
        allPolled = nowMs() - t0;
        cpuAllPolled = procSample(s.pid);
        threadsAllPolled = threadCpuMs(s.pid);
        break;
      }
      await sleep(250);
    }
    const st = await f.stats(false);
    cpuAllPolled ??= procSample(s.pid);
    const byThread = threadCpuDelta(threadsUp, threadsAllPolled ?? threadCpuMs(s.pid));
    const hbBack = summarize(st.recoveredHb);
    const recoveryCpuMs = cpuUp && cpuAllPolled ? cpuAllPolled.cpuMs - cpuUp.cpuMs : NaN;
    const startCpuMs = cpuUp?.cpuMs ?? NaN;
    const handshakes = st.tlsConnects - tlsBefore.tlsConnects;
    // Every command submitted before the restart must reach succeeded.
    let pending = [...ids];
    const states: Record<string, number> = {};
    const cdeadline = Date.now() + 120_000;
    while (pending.length && Date.now() < cdeadline) {
      const still: number[] = [];
      for (const id of pending) {
        const c = (await s.admin.request<{ state: string }>('GET', `/v1/commands/${id}`)).body;
        if (c.state !== 'succeeded') still.push(id);
      }
      pending = still;
      if (pending.length) await sleep(2000);
    }
    const tAllDelivered = nowMs() - t0;
    for (const id of ids) {
      const c = (await s.admin.request<{ state: string }>('GET', `/v1/commands/${id}`)).body;
      states[c.state] = (states[c.state] ?? 0) + 1;
    }
    const p = w.read();
    w.stop();
    const back = allPolled / 1000;
    results.storm = {
      agents: n,
      restartDownMs: Math.round(tDown - t0),
      restartUpMs: Math.round(tUp - t0),
      allPolledAgainSeconds: Math.round(back * 100) / 100,
      heldPollsMax: heldMax,
      heldTimeline: timeline,
      heartbeatBack: { agents: st.recoveredHb.length, secondsP50: hbBack.p50 / 1000, secondsP99: hbBack.p99 / 1000, secondsMax: hbBack.max / 1000 },
      reconnects: { tls: st.tlsConnects - tlsBefore.tlsConnects, resumed: st.tlsResumed - tlsBefore.tlsResumed },
      commandsBefore: ids.length,
      commandStates: states,
      allDeliveredSeconds: Math.round(tAllDelivered / 100) / 10,
      cpuPercentAfterRestart: p.cpuPercent,
      // Load-independent: the new server's CPU from serving again to all polling, per agent (its start-up apart).
      // (It includes the heartbeats of the agents already back: steadyPercent is the server with all of them back, before the restart.)
      serverCpu: { startMs: Math.round(startCpuMs), recoveryMs: Math.round(recoveryCpuMs), msPerReturningAgent: Math.round((recoveryCpuMs / n) * 100) / 100, steadyPercent: steadyCpuPercent, byThreadMs: byThread },
      // What the recovery took, from SIGTERM to all polling: handshakes and every request attempt, failed ones apart (a timed-out attempt is done again).
      attempts: { handshakes, handshakesPerAgent: Math.round((handshakes / n) * 100) / 100, heartbeats: st.hbOk + st.hbErr, heartbeatsFailed: st.hbErr, polls: st.pollOk + st.pollErr, pollsFailed: st.pollErr, resultsFailed: st.resultsErr, retryAfterWaits: st.retryAfterWaits },
      agentsHonourRetryAfter: process.env.BENCH_AGENT_RETRY_AFTER !== '0',
      loadgen,
      // The load generators' own CPU from the new server's start to the end of the delivery checks.
      loadgenCpuPercentAfterRestart: Math.round(((f.cpuMs() - lgUp) / (p.seconds * 1000)) * 1000) / 10,
      loadAverage: loadAverage(),
      errors: st.errors,
    };
    const lost = ids.length - (states.succeeded ?? 0);
    row('4 reconnect storm', `${n} agents: all polling again`, Number.isNaN(back) ? `not within 60 s (max ${heldMax} held)` : `${back.toFixed(2)} s after the restart (up after ${((tUp - t0) / 1000).toFixed(2)} s)`, '≤ 15 s', !Number.isNaN(back) && back <= 15);
    row('4 reconnect storm', 'server CPU per returning agent', `${(recoveryCpuMs / n).toFixed(2)} ms (${Math.round(recoveryCpuMs)} ms from serving to all polling, heartbeats of those back included; start-up ${Math.round(startCpuMs)} ms; ${steadyCpuPercent} % of a core before the restart)`);
    row('4 reconnect storm', 'server CPU by thread over the recovery', Object.entries(byThread).map(([k, v]) => `${k} ${v} ms`).join(', '));
    row('4 reconnect storm', 'recovery attempts', `${handshakes} handshakes (${(handshakes / n).toFixed(2)}/agent), heartbeats ${st.hbOk + st.hbErr} (${st.hbErr} failed), polls ${st.pollOk + st.pollErr} (${st.pollErr} failed), ${st.retryAfterWaits} Retry-After waits`);
    row('4 reconnect storm', 'TLS sessions resumed on reconnect', `${st.tlsResumed - tlsBefore.tlsResumed}/${st.tlsConnects - tlsBefore.tlsConnects}`);
    row('4 reconnect storm', `commands queued before`, `${states.succeeded ?? 0}/${ids.length} succeeded (${Math.round(tAllDelivered / 1000)} s), ${lost} lost`, 'nothing lost', lost === 0);
    targets.add({ name: '10,000 agents polling again after a restart', value: Number.isNaN(back) ? NaN : Math.round(back * 100) / 100, unit: 's', comparison: '<=', target: 15, conditionsMet: n >= 10_000, ...(n >= 10_000 ? {} : { note: `measured with ${n} agents` }) });
    targets.add({ name: 'commands queued before the restart, lost', value: lost, unit: 'commands', comparison: '==', target: 0 });
  } finally {
    await f.stop();
    await s.stop();
  }
}

// ------------------------------------------------------------------ 5. node agent footprint

async function footprint() {
  const s = await server('footprint');
  const proxy = new CountingProxy();
  const dir = join(runDir, 'node-agent');
  mkdirSync(dir, { recursive: true });
  const sock = join(dir, 'relay.sock');
  const relayPort = await freePort();
  await proxy.listen(s.port, [{ port: relayPort }, { path: sock }]);
  let agentPid = 0;
  let netns = '';
  try {
    // A cluster of its own per run: the node is alone in its mesh (earlier runs' nodes would be its peers).
    const cid = `bf${Date.now().toString(36)}`;
    await s.admin.request('POST', '/v1/clusters', { cid }).catch(() => undefined);
    const { aid } = (await s.admin.request<{ aid: string }>('GET', '/v1/whoami')).body;
    const { token } = (await s.admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: cid, role: 'node', controlPlane: false })).body;
    const config = join(dir, 'config.yaml');
    // What is deployed: bin/tether-node (the bundle, and for `agent` the daemon's flags); it exec's node, so the pid stays.
    const cli = join(REPO_ROOT, 'bin/tether-node');
    const name = `n${Date.now().toString(36)}`;
    await run(cli, ['register', '--token', token, '--aid', aid, '--control-plane', '0', '--server', `https://127.0.0.1:${relayPort}`, '--ca-file', join(dataDir, 'ca.crt'), '--config', config, '--name', name, '--wg0-interface', 'tbwg0', '--wg1-interface', 'tbwg1']);
    // The daemon runs in a network namespace of its own (its WireGuard interfaces stay there) and a
    // mount namespace with a private /var/run/wireguard; its only way out is the counting relay.
    const script = [
      'set -e',
      'ip link set lo up',
      'mkdir -p /var/run/wireguard && mount -t tmpfs tmpfs /var/run/wireguard',
      `${process.execPath} ${join(REPO_ROOT, 'bench/forward.ts')} ${relayPort} ${sock} &`,
      'sleep 0.5',
      `exec ${withNofile(cli, ['agent', '--config', config]).flat().join(' ')}`,
    ].join('\n');
    const logFile = join(dir, 'agent.log');
    const { openSync, closeSync } = await import('node:fs');
    const fd = openSync(logFile, 'a');
    const child = spawn('unshare', ['--net', '--mount', '--propagation', 'private', '--', 'bash', '-c', script], { stdio: ['ignore', fd, fd], env: { ...process.env, TETHER_LOG_LEVEL: 'info' } });
    closeSync(fd);
    agentPid = child.pid!;
    // Start-up (registration of the VPN keys, the first sync) is not idle: measure after it.
    const settle = quick ? 8 : 30;
    log(`footprint: node agent ${name} (pid ${agentPid}) settling ${settle} s, then idle for ${cfg.footprintSeconds} s`);
    await sleep(settle * 1000);
    // Read once unshare has moved it (right after spawn it may still be in ours): the clean-up kills what runs there.
    netns = readlinkSync(`/proc/${agentPid}/ns/net`);
    const findAgentPid = () => {
      // prlimit exec's node: the pid stays the one bash exec'd into.
      return agentPid;
    };
    const pid = findAgentPid();
    const w = new ProcWatcher(pid, 5000);
    const c0 = childrenCpu(pid);
    proxy.reset();
    const t0 = Date.now();
    const rss: number[] = [];
    while (Date.now() - t0 < cfg.footprintSeconds * 1000) {
      await sleep(5000);
      const p = procSample(pid);
      if (p) rss.push(p.rssBytes);
    }
    const secs = (Date.now() - t0) / 1000;
    const p = w.read();
    w.stop();
    const c1 = childrenCpu(pid);
    const childPct = Math.round(((c1 - c0) / 10 / secs) * 100) / 100;
    const bytes = proxy.up + proxy.down;
    const perHour = Math.round((bytes * 3600) / secs);
    // RSS split: anonymous (heap, malloc) vs file-backed pages (mostly the node binary, shared with every Node process).
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const statusBytes = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024;
    const agentLog = readFileSync(logFile, 'utf8');
    const vpnOk = agentLog.includes('VPN synchronised');
    const r = {
      seconds: Math.round(secs),
      rssMB: mb(p.rssBytes),
      rssMaxMB: mb(Math.max(...rss)),
      rssAnonymousMB: mb(statusBytes('RssAnon')),
      rssFileMB: mb(statusBytes('RssFile')),
      cpuPercent: p.cpuPercent,
      cpuPercentWithChildren: Math.round((p.cpuPercent + childPct) * 100) / 100,
      bytesUp: proxy.up,
      bytesDown: proxy.down,
      bytesPerHour: perHour,
      kbPerHour: Math.round(perHour / 1024),
      newConnections: proxy.connections,
      vpnSynchronised: vpnOk,
    };
    results.footprint = r;
    row('5 node agent', `idle RSS (${r.seconds} s)`, `${r.rssMB} MB (max ${r.rssMaxMB} MB; ${r.rssAnonymousMB} anonymous, ${r.rssFileMB} file-backed)`, '≤ 55 MB', r.rssMaxMB <= 55);
    row('5 node agent', 'idle CPU', `${r.cpuPercent} % (${r.cpuPercentWithChildren} % with its wg/ip child processes)`, '< 0.5 %', r.cpuPercentWithChildren < 0.5);
    row('5 node agent', 'bytes on the wire', `${r.kbPerHour} KB/hour (${r.bytesUp} up, ${r.bytesDown} down in ${r.seconds} s)`, '≤ 300 KB/hour', r.kbPerHour <= 300);
    targets.add({ name: 'node agent idle RSS (max)', value: r.rssMaxMB, unit: 'MB', comparison: '<=', target: 55 });
    targets.add({ name: 'node agent idle CPU, with its children', value: r.cpuPercentWithChildren, unit: '%', comparison: '<', target: 0.5 });
    targets.add({ name: 'node agent bytes on the wire', value: r.kbPerHour, unit: 'KB/hour', comparison: '<=', target: 300 });
  } finally {
    // Whatever else runs in the agent's namespace (the relay, wireguard-go) was started by this run.
    if (agentPid) await stopAgentInNetns(agentPid, netns);
    await proxy.close();
    await s.stop();
  }
}

function childrenCpu(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[13]) + Number(f[14])) * 1000) / 100;
  } catch {
    return 0;
  }
}



// ------------------------------------------------------------------ 6. storage

async function storage() {
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn(process.execPath, [join(REPO_ROOT, 'bench/storage.ts'), join(runDir, 'storage'), String(cfg.storageSeconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let o = '';
    p.stdout.on('data', (d) => (o += d));
    p.on('exit', (code) => (code === 0 ? resolve(o) : reject(new Error(`storage bench exited ${code}`))));
  });
  rmSync(join(runDir, 'storage'), { recursive: true, force: true });
  const r = JSON.parse(out) as {
    heartbeatOnePerCommit: { perSecond: number; latencyMs: LatencySummary };
    heartbeatBatched: { batch: number; perSecond: number; commitLatencyMs: LatencySummary };
    commandLifecycle: { commandsPerSecond: number; writesPerSecond: number; submitMs: LatencySummary; claimMs: LatencySummary; resultMs: LatencySummary };
    heartbeatOnePerCommitFull: { perSecond: number; latencyMs: LatencySummary };
    durableLives: Record<'normal' | 'groupCommit' | 'fsyncPerCommit', { clients: number; commandsPerSecond: number; submitAckMs: LatencySummary; lifeMs?: LatencySummary; cpuMsPerCommand: number; acksPerSync: number | null }> & {
      groupCommitCheckpointWorker?: { clients: number; commandsPerSecond: number; submitAckMs: LatencySummary; lifeMs?: LatencySummary; cpuMsPerCommand: number; acksPerSync: number | null };
    };
  };
  results.storage = r;
  const h = r.heartbeatOnePerCommit;
  row('6 storage', 'heartbeat writes, one per commit', `${h.perSecond}/s, commit p50 ${h.latencyMs.p50} ms, p99 ${h.latencyMs.p99} ms`, '≥ 4,000/s', h.perSecond >= 4000);
  row('6 storage', `heartbeat writes, ${r.heartbeatBatched.batch} per commit`, `${r.heartbeatBatched.perSecond}/s, commit p50 ${r.heartbeatBatched.commitLatencyMs.p50} ms, p99 ${r.heartbeatBatched.commitLatencyMs.p99} ms`);
  const c = r.commandLifecycle;
  row('6 storage', 'state writes (submit+claim+result)', `${c.commandsPerSecond} commands/s = ${c.writesPerSecond} commits/s; p99 ${c.submitMs.p99}/${c.claimMs.p99}/${c.resultMs.p99} ms`, '≥ 2,000 commands/s', c.commandsPerSecond >= 2000);
  row('6 storage', 'heartbeat writes, synchronous=FULL', `${r.heartbeatOnePerCommitFull.perSecond}/s, commit p99 ${r.heartbeatOnePerCommitFull.latencyMs.p99} ms`);
  const names = { normal: 'NORMAL, no barrier', groupCommit: 'FULL, group commit', fsyncPerCommit: 'FULL, fsync per commit', groupCommitCheckpointWorker: 'FULL, group commit, checkpoint worker' } as const;
  for (const k of ['normal', 'groupCommit', 'fsyncPerCommit', 'groupCommitCheckpointWorker'] as const) {
    const d = r.durableLives[k];
    if (!d) continue;
    row('6 storage', `acknowledged lives, ${d.clients} clients, ${names[k]}`, `${d.commandsPerSecond} commands/s, submit ack p50 ${d.submitAckMs.p50} ms, p99 ${d.submitAckMs.p99} ms${d.lifeMs ? `, life p99 ${d.lifeMs.p99} ms` : ''}, ${d.cpuMsPerCommand} ms CPU/command${d.acksPerSync ? `, ${d.acksPerSync} acks per fsync` : ''}`, k === 'normal' ? undefined : '≥ 2,000 commands/s', k === 'normal' ? undefined : d.commandsPerSecond >= 2000);
  }
  targets.add({ name: 'storage: heartbeat writes, one per commit', value: h.perSecond, unit: '/s', comparison: '>=', target: 4000 });
  targets.add({ name: 'storage: submit + claim + result', value: c.commandsPerSecond, unit: 'commands/s', comparison: '>=', target: 2000 });
}

// ------------------------------------------------------------------ 8. CLI

async function cli() {
  const s = await server('cli');
  try {
    const workDir = join(runDir, 'cli');
    mkdirSync(workDir, { recursive: true });
    const r = await cliBench(s, { runs: cfg.cliRuns, workDir, log });
    // Which CLI was measured, without this machine's paths: this checkout, or another (BENCH_CLI_ROOT).
    results.cli = { root: process.env.BENCH_CLI_ROOT ? 'BENCH_CLI_ROOT (another checkout)' : 'this checkout', commands: r };
    for (const c of r) {
      const ok = c.failed === 0 && c.wallMsMedian <= 150;
      row('8 CLI', `tether ${c.command}`, `${c.wallMsMedian} ms wall (max ${c.wallMsMax}), ${c.cpuMsMedian} ms CPU${c.failed ? `, ${c.failed}/${c.runs} FAILED` : ''}`, '< 150 ms wall', ok);
      targets.add({ name: `CLI: tether ${c.command}, median wall`, value: c.wallMsMedian, unit: 'ms', comparison: '<', target: 150, conditionsMet: c.failed === 0, ...(c.failed ? { note: `${c.failed}/${c.runs} failed` } : {}) });
    }
  } finally {
    await s.stop();
  }
}

// ------------------------------------------------------------------ 9. backup (not in the default set: --only backup)

async function backup() {
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn(process.execPath, [join(REPO_ROOT, 'bench/backup.ts'), join(runDir, 'backup'), String(cfg.backupCommands)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let o = '';
    p.stdout.on('data', (d) => (o += d));
    p.on('exit', (code) => (code === 0 ? resolve(o) : reject(new Error(`backup bench exited ${code}`))));
  });
  const r = JSON.parse(out) as {
    commands: number;
    databaseMB: number;
    backupFileMB: number;
    backupSeconds: number;
    restoreSeconds: number;
    submitMs: { before: LatencySummary; duringBackup: LatencySummary };
    submittedDuringBackup: number;
    ackedBeforeBackup: number;
    missingAfterRestore: number;
  };
  results.backup = r;
  row('9 backup', `tether backup, ${r.commands} commands (${r.databaseMB} MB) under submissions`, `${r.backupSeconds} s → ${r.backupFileMB} MB; restore ${r.restoreSeconds} s`);
  row('9 backup', 'submit latency before / during the backup', `p50 ${r.submitMs.before.p50} / ${r.submitMs.duringBackup.p50} ms, p99 ${r.submitMs.before.p99} / ${r.submitMs.duringBackup.p99} ms (${r.submittedDuringBackup} during)`);
  row('9 backup', 'acknowledged before the backup, missing after restore', `${r.missingAfterRestore} of ${r.ackedBeforeBackup}`, '0', r.missingAfterRestore === 0);
  targets.add({ name: 'backup: acknowledged, missing after restore', value: r.missingAfterRestore, unit: 'commands', comparison: '==', target: 0 });
}

// ------------------------------------------------------------------ 10. drift checks (not in the default set: --only drift)

async function drift() {
  const r = await driftBench({ dir: join(runDir, 'drift'), instances: num(flags['drift-instances'], 200), intervalSeconds: num(flags['drift-interval-seconds'], 600), log });
  results.drift = r;
  row('10 drift checks', `${r.instances} instances, interval ${r.intervalSeconds} s: all checked`, `${r.allChecksSeconds} s after the settings (${r.checksEnded} checks ended)`, `≤ ${r.intervalSeconds} s + one 5 s tick`, r.withinOneInterval);
  row('10 drift checks', 'per check: created → ended (queue wait)', `p50 ${r.checkLatencyMs.p50} ms, p99 ${r.checkLatencyMs.p99} ms (wait p50 ${r.queueWaitMs.p50}, p99 ${r.queueWaitMs.p99} ms)`);
  row('10 drift checks', 'CPU per check above idle: control plane / agent', `${r.controlPlaneCpuMsPerCheck} ms / ${r.agentCpuMsPerCheck} ms (agent concurrency ${r.agentConcurrency})`);
}

// ------------------------------------------------------------------ main

const started = Date.now();
// BENCH_PIN=split: the bench and its load generators on every CPU but the control plane's (bench/lib/pin.ts).
pinSelf();
const load0 = loadAverage();
// The machine's own speed and the host's steal over the run (bench/lib/machine.ts): runs at other times of day compare only when these agree.
const probe0 = speedProbeMs();
const cpu0 = cpuTimes();
log(`speed probe: cpu ${probe0.cpu} ms, memory ${probe0.memory} ms (bench/lib/machine.ts; lower is faster)`);
log(`mode ${quick ? 'quick' : 'full'}; open-files limit for the control plane and load generators: ${NOFILE}${NOFILE < NOFILE_WANTED ? ` (wanted ${NOFILE_WANTED}; the hard limit cannot be raised here)` : ''}; at most ${maxAgents} agents`);
try {
  const heldRuns: Record<string, unknown>[] = [];
  if (scenarios.has('held')) {
    // Sizes beyond the open-files limit are reported as not run; the largest size that fits is run instead.
    const sizes = [...cfg.held];
    if (sizes.some((n) => n > maxAgents) && !sizes.includes(maxAgents)) sizes.splice(sizes.findIndex((n) => n > maxAgents), 0, maxAgents);
    for (const n of sizes) {
      try {
        const r = await held(n);
        if (r) heldRuns.push(r);
      } catch (err) {
        // An overloaded size (the load generators share the 2 cores) is reported, and the run goes on.
        const acceptQueue = (err as { acceptQueue?: AcceptQueueSummary }).acceptQueue;
        log(`held ${n}: failed: ${(err as Error).message}${acceptQueue ? `; accept queue: ${JSON.stringify(acceptQueue)}` : ''}`);
        results[`held_${n}`] = { failed: (err as Error).message, ...(acceptQueue ? { acceptQueue } : {}) };
        row('1 held agents', `N=${n}`, `failed: ${(err as Error).message.slice(0, 60)}`);
      }
    }
  }
  if (heldRuns.length) {
    // The goals at 20,000 agents, from the largest size measured when it could not be reached.
    type Held = { agents: number; connections: number; rssMB: number; baselineRssMB: number; rssPerAgentKB: number; cpuPercent: number; heartbeatsPerSecond: number; serverCpuMsPerHeartbeat: number; heartbeatLatencyMs: LatencySummary };
    // From the largest size whose agents all connected (an overloaded machine's partial run says little).
    const runs = heldRuns as Held[];
    const big = runs.filter((r) => r.connections >= r.agents * 0.98).at(-1) ?? runs.at(-1)!;
    const at20k = big.agents >= 20000;
    const rss20k = at20k ? big.rssMB : Math.round(big.baselineRssMB + (big.rssPerAgentKB * 20000) / 1024);
    const cpu4k = Math.round((big.cpuPercent / big.heartbeatsPerSecond) * 4000);
    results.goalsAt20k = { measuredAt: big.agents, extrapolated: !at20k, rssMB: rss20k, cpuPercentAt4000HeartbeatsPerSecond: cpu4k };
    row('1 held agents', `20,000 agents RSS${at20k ? '' : ` (extrapolated from ${big.agents})`}`, `${rss20k} MB`, '≤ 2 GB', rss20k <= 2048);
    row('1 held agents', `4,000 heartbeats/s CPU${at20k ? '' : ` (scaled from ${big.heartbeatsPerSecond}/s)`}`, `${cpu4k} % of a core`, '≤ 1 core', cpu4k <= 100);
    row('1 held agents', `heartbeat p99 at ${big.agents} agents`, `${big.heartbeatLatencyMs.p99} ms`, '≤ 10 ms', big.heartbeatLatencyMs.p99 <= 10);
    const scaled = at20k ? '' : `extrapolated from ${big.agents} agents`;
    targets.add({ name: '20,000 idle agents, server RSS', value: rss20k, unit: 'MB', comparison: '<=', target: 2048, ...(scaled ? { note: scaled } : {}) });
    // 4,000/s on one core = 0.25 ms of server CPU per heartbeat: the load-independent form of the target.
    const cpuPerHb = big.serverCpuMsPerHeartbeat;
    targets.add({ name: 'server CPU per heartbeat (4,000/s on 1 core)', value: cpuPerHb, unit: 'ms', comparison: '<=', target: 0.25, note: `at ${big.heartbeatsPerSecond}/s, ${big.agents} agents` });
    targets.add({ name: '4,000 heartbeats/s, server CPU', value: cpu4k, unit: '% of a core', comparison: '<=', target: 100, ...(big.heartbeatsPerSecond >= 4000 ? {} : { note: `scaled from ${big.heartbeatsPerSecond}/s` }) });
    targets.add({ name: 'heartbeat p99 at 4,000/s', value: big.heartbeatLatencyMs.p99, unit: 'ms', comparison: '<=', target: 10, conditionsMet: big.heartbeatsPerSecond >= 3800, ...(big.heartbeatsPerSecond >= 3800 ? {} : { note: `measured at ${big.heartbeatsPerSecond}/s (${big.agents} agents)` }) });
  }
  if (scenarios.has('dispatch') || scenarios.has('throughput')) await dispatchAndThroughput();
  if (scenarios.has('storm')) await storm();
  if (scenarios.has('footprint')) await footprint();
  if (scenarios.has('storage')) await storage();
  if (scenarios.has('hostile')) {
    const agents = Math.min(cfg.hostileAgents, maxAgents);
    await hostile({ agents, seconds: cfg.hostileSeconds, server, identities, fleet: (s, n) => fleet(s, n, 'hold', rampFor(n)), rampMs: rampFor(agents), log, row, results });
    const h = results.hostile as { heartbeatLatencyMs: LatencySummary; heartbeatErrors: number; peakRssMB: number } | undefined;
    if (h) {
      targets.add({ name: 'heartbeat p99 under attack', value: h.heartbeatLatencyMs.p99, unit: 'ms', comparison: '<', target: 250, conditionsMet: h.heartbeatErrors === 0, ...(h.heartbeatErrors ? { note: `${h.heartbeatErrors} heartbeat errors` } : {}) });
      targets.add({ name: 'server RSS under attack, peak', value: h.peakRssMB, unit: 'MB', comparison: '<', target: 600 });
    }
  }
  if (scenarios.has('cli')) await cli();
  if (scenarios.has('backup')) await backup();
  if (scenarios.has('drift')) await drift();
  if (scenarios.has('replicas')) results.replicas = await (await import('./replicas.ts')).replicasBench({ cfg: (await import('./lib/replicas.plan.ts')).parseReplicasOption(flags.replicas), runDir, perProcess: cfg.perProcess, rampMs: rampFor, log, row, targets }); // not in the default set: --only replicas
  if (scenarios.has('console')) results.console = await (await import('./console.ts')).consoleBench({ agents: 10_000, commands: 100_000, clusters: 50, runs: quick ? 3 : 7, row }); // not in the default set: --only console (bench/console.ts)
  if (scenarios.has('node-soak')) await nodeSoak({ seconds: parseDuration(flags.duration ?? (quick ? '60s' : '10m')), runDir, log, row, results });
} finally {
  if (durability) rows.unshift({ figure: 'durability', measure: 'what an answer of the control plane promises', value: durability.mode === 'FULL' ? `FULL: on disk before it is answered (${durability.method})` : 'NORMAL: committed to the WAL (survives kill -9, not a power cut)' });
  const command = `npm run bench --${process.argv.slice(2).map((a) => ` ${a}`).join('') || ''}`;
  const doc = {
    date: new Date().toISOString(),
    command: redactUrls(command.trim()),
    argv: process.argv.slice(2).map(redactUrls),
    database: databaseUrl ? { dialect: 'postgres', url: redactUrls(databaseUrl) } : { dialect: 'sqlite' },
    mode: quick ? 'quick' : 'full',
    machine: { cores: cpus().length, cpuModel: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, loadAverageAtStart: load0, loadAverageAtEnd: loadAverage(), speedProbeMs: { atStart: probe0, atEnd: speedProbeMs() }, cpuOverRun: cpuShares(cpu0, cpuTimes()) ?? null, pinning: PINNING },
    openFilesLimit: { wanted: NOFILE_WANTED, applied: NOFILE, how: 'prlimit --nofile=N:N on every spawned control plane, load generator and node agent', maxAgents },
    note: flags.note,
    loadgen,
    durability: durability?.mode ?? null,
    durabilityMethod: durability?.method ?? null,
    sqliteSynchronous: process.env.TETHER_SQLITE_SYNCHRONOUS === 'FULL' ? 'FULL' : 'NORMAL',
    // The environment of the control plane and the Go load generator that changes what is measured
    // (null: unset, the default).
    environment: Object.fromEntries(MEASURED_ENV.map((k) => [k, process.env[k] ?? null])),
    seconds: Math.round((Date.now() - started) / 1000),
    config: cfg,
    table: rows,
    targets: targets.list,
    results,
  };
  mkdirSync(join(REPO_ROOT, 'bench/results'), { recursive: true });
  const file = join(REPO_ROOT, 'bench/results', `${doc.date.slice(0, 19).replace(/:/g, '-')}${quick ? '-quick' : ''}.json`);
  writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
  printTable(doc);
  process.stdout.write(`\nresults: ${file}\n`);
}

function printTable(doc: {
  command: string;
  durability: string | null;
  durabilityMethod: string | null;
  machine: { cores: number; loadAverageAtStart: number[]; loadAverageAtEnd: number[]; speedProbeMs: { atStart: SpeedProbe; atEnd: SpeedProbe }; cpuOverRun: CpuShares | null; pinning: Pinning | null };
  openFilesLimit: { applied: number };
}) {
  const w = [20, 42, 70, 22];
  const line = (c: string[]) => c.map((x, i) => x.padEnd(w[i]!)).join(' | ');
  const out = [
    `command: ${doc.command}   cores: ${doc.machine.cores}   load: ${doc.machine.loadAverageAtStart.join(' ')} → ${doc.machine.loadAverageAtEnd.join(' ')}   open files: ${doc.openFilesLimit.applied}`,
    `machine: speed probe cpu ${doc.machine.speedProbeMs.atStart.cpu} → ${doc.machine.speedProbeMs.atEnd.cpu} ms, memory ${doc.machine.speedProbeMs.atStart.memory} → ${doc.machine.speedProbeMs.atEnd.memory} ms${doc.machine.cpuOverRun ? `   over the run: ${doc.machine.cpuOverRun.busyPercent} % busy, ${doc.machine.cpuOverRun.stealPercent} % steal` : ''}`,
    doc.machine.pinning ? `pinned (BENCH_PIN=split): the control plane on CPU ${doc.machine.pinning.server}, the bench and its load generators on ${doc.machine.pinning.others}` : 'not pinned: the control plane, the bench and its load generators share every core',
    `durability: ${doc.durability ?? 'no control plane started'}${doc.durabilityMethod && doc.durabilityMethod !== 'none' ? ` (${doc.durabilityMethod})` : ''}`,
    line(['figure', 'measure', 'value', 'target']) + ' | met',
    w.map((n) => '-'.repeat(n)).join('-|-') + '-|----',
    ...rows.map((r) => line([r.figure, r.measure, r.value, r.target ?? '']) + ` | ${r.met === undefined || r.met === null ? '' : r.met ? 'yes' : 'NO'}`),
  ];
  process.stdout.write(`\n${out.join('\n')}\n`);
  const t = targets.render();
  if (t) process.stdout.write(`\n${t}\n`);
}
