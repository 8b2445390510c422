/**
 * `npm run bench -- --only replicas [--replicas key=value,…]`: the same workload, in one run,
 * against (1) SQLite, one server; (2) PostgreSQL, one replica; (3) PostgreSQL, two replicas behind
 * nothing: the agents spread over both (each simulated agent connects to its own replica first,
 * as an agent given both URLs does while its replica answers), submissions alternated between
 * them. The PostgreSQL is started by the bench (bench/lib/postgres.ts), durable by default (fsync
 * and synchronous_commit on, as SQLite's durability barrier); `pg-durable=off` turns that off.
 * A fresh database (and so a fresh CA and agent identities) per setup.
 *
 * Per setup: submit → claim p50/p99 (agents held, commands submitted one at a time every 20 ms),
 * commands/s end to end (N commands over the agents, results reported), heartbeats/s and CPU per
 * heartbeat in a quiet window (the control plane's summed over replicas, PostgreSQL's summed over
 * its processes), polls held and RSS per replica.
 */
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { HttpClient } from '../common/http-client.ts';
import { Fleet } from './lib/fleet.ts';
import { lastFinished, waitApplied } from './lib/applied.ts';
import { clusterOf, ensureIdentities, identityDir } from './lib/identities.ts';
import { freePort } from './lib/net.ts';
import { startPostgres, type BenchPostgres } from './lib/postgres.ts';
import { cpuMsPer, replicaOfAgent, replicaOfSubmission, replicasOf, setupName, spreadAgents, treeCpuDelta, type ReplicasConfig, type Setup } from './lib/replicas.plan.ts';
import { metric, startServer, type BenchServer } from './lib/server.ts';
import type { Targets } from './lib/targets.ts';
import { mb, nowMs, procSample, sleep, summarize, type LatencySummary } from './lib/util.ts';

type Row = (figure: string, measure: string, value: string, target?: string, met?: boolean | null) => void;

export interface ReplicasContext {
  cfg: ReplicasConfig;
  runDir: string;
  perProcess: number;
  rampMs: (n: number) => number;
  log: (s: string) => void;
  row: Row;
  targets: Targets;
}

export interface SetupResult {
  setup: Setup;
  name: string;
  replicas: number;
  durability: string;
  agents: number;
  submitToClaimMs: LatencySummary & { claimed: number; sameReplicaP50?: number; otherReplicaP50?: number };
  /** POST /v1/commands answered (202: committed), in the dispatch phase. */
  submitAnsweredMs: LatencySummary;
  throughput: { commands: number; done: number; seconds: number; commandsPerSecond: number };
  heartbeats: { perSecond: number; errors: number; seconds: number; serverCpuMsPerHeartbeat: number; postgresCpuMsPerHeartbeat: number | null };
  perReplica: { pollsHeld: number; connections: number; rssMB: number; cpuPercentInWindow: number }[];
  postgresPssMB: number | null;
}

const manifest = { manifests: 'apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n' };

export async function replicasBench(ctx: ReplicasContext): Promise<{ config: ReplicasConfig; postgres: { version: string; durable: boolean } | null; setups: SetupResult[] }> {
  const { cfg, log } = ctx;
  const out: SetupResult[] = [];
  let pgInfo: { version: string; durable: boolean } | null = null;
  const needsPg = cfg.setups.some((s) => s !== 'sqlite');
  const pgServer = needsPg ? await startPostgres({ durable: cfg.pgDurable }) : undefined;
  if (pgServer) {
    pgInfo = { version: pgServer.version, durable: pgServer.durable };
    log(`replicas: ${pgServer.version}, fsync/synchronous_commit/full_page_writes ${pgServer.durable ? 'on' : 'off'}`);
  }
  try {
    for (const setup of cfg.setups) {
      const r = await runSetup(ctx, setup, pgServer);
      out.push(r);
      report(ctx, r);
    }
  } finally {
    await pgServer?.stop();
  }
  return { config: cfg, postgres: pgInfo, setups: out };
}

async function runSetup(ctx: ReplicasContext, setup: Setup, pgServer: BenchPostgres | undefined): Promise<SetupResult> {
  const { cfg, log } = ctx;
  const R = replicasOf(setup);
  const n = cfg.agents;
  const base = join(ctx.runDir, `replicas-${setup}`);
  mkdirSync(base, { recursive: true });
  const env: NodeJS.ProcessEnv = {};
  if (setup !== 'sqlite') {
    env.TETHER_DATABASE_URL = await pgServer!.database(`bench_${setup}_${Date.now().toString(36)}`);
    env.TETHER_CA_KEY_ENCRYPTION_KEY = randomBytes(32).toString('base64');
  } else {
    env.TETHER_DATABASE_URL = '';
  }
  const servers: BenchServer[] = [];
  const fleets: Fleet[] = [];
  const submitters: HttpClient[] = [];
  try {
    for (let i = 0; i < R; i++) {
      servers.push(
        await startServer({ dataDir: join(base, `data-${i}`), port: await freePort(), logFile: join(base, `server-${i}.log`), env, ...(i > 0 ? { adminToken: servers[0]!.adminToken } : {}) }),
      );
    }
    const s0 = servers[0]!;
    const durability = `${s0.durability.mode}${s0.durability.method !== 'none' ? ` (${s0.durability.method})` : ''}`;
    log(`replicas ${setup}: ${R} control plane(s) up; issuing ${n} identities`);
    await ensureIdentities({ url: s0.url, caPem: s0.caPem, admin: s0.admin, count: n, log });
    for (const s of servers) for (let k = 0; k < 4; k++) submitters.push(new HttpClient({ baseUrl: s.url, ca: s.caPem, bearerToken: s.adminToken, timeoutMs: 60_000 }));
    // Submitter j talks to replica j mod R.
    const submitOn = (k: number, agent: number) => submitters[(replicaOfSubmission(k, R) + R * (Math.floor(k / R) % 4)) % submitters.length]!.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: clusterOf(agent) }, type: 'manifest', spec: manifest, maxAttempts: 3 });

    for (const part of spreadAgents(n, R)) {
      const s = servers[part.replica]!;
      const size = part.to - part.from;
      fleets.push(await Fleet.start({ url: s.url, caPem: s.caPem, identityDir: identityDir(s0.caPem), agents: size, offset: part.from, perProcess: ctx.perProcess, heartbeatMs: 5000, pollWaitSeconds: 25, rampMs: ctx.rampMs(n), mode: 'ack', localAddresses: 8 }));
    }
    const stats = async (reset: boolean) => {
      const all = await Promise.all(fleets.map((f) => f.stats(reset)));
      return { hbOk: all.reduce((a, s) => a + s.hbOk, 0), hbErr: all.reduce((a, s) => a + s.hbErr, 0), claims: all.flatMap((s) => s.claims), resultDone: all.flatMap((s) => s.resultDone), errors: all.map((s) => s.errors) };
    };
    await Promise.all(fleets.map((f) => f.waitConnected(ctx.rampMs(n) + 60_000, log)));
    await sleep(3000);
    await stats(true);

    // Dispatch: one at a time, every 20 ms, to a random agent; the k-th submission on replica k mod R.
    log(`replicas ${setup}: dispatch, ${cfg.dispatch} commands one at a time`);
    const sent = new Map<number, { t0: number; same: boolean }>();
    const answered: number[] = [];
    for (let k = 0; k < cfg.dispatch; k++) {
      const agent = Math.floor(Math.random() * n);
      const t0 = nowMs();
      const { id } = (await submitOn(k, agent)).body;
      answered.push(nowMs() - t0);
      sent.set(id, { t0, same: replicaOfAgent(agent, n, R) === replicaOfSubmission(k, R) });
      await sleep(20);
    }
    await sleep(2000);
    const lat: number[] = [];
    const same: number[] = [];
    const other: number[] = [];
    for (const c of (await stats(true)).claims) {
      const s = sent.get(c.id);
      if (!s) continue;
      lat.push(c.at - s.t0);
      (s.same ? same : other).push(c.at - s.t0);
    }
    const d = summarize(lat);
    const submitToClaimMs = { ...d, claimed: lat.length, ...(R > 1 ? { sameReplicaP50: summarize(same).p50, otherReplicaP50: summarize(other).p50 } : {}) };

    // Throughput: N commands from 64 submitters (alternating replicas), results reported by the agents.
    log(`replicas ${setup}: throughput, ${cfg.commands} commands over ${n} agents`);
    const before = await metric(servers[0]!, 'tether_commands', 'state="succeeded"');
    await stats(true);
    const t0 = nowMs();
    let next = 0;
    let minId = Number.POSITIVE_INFINITY;
    let maxId = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < cfg.commands) {
          const k = next++;
          const { id } = (await submitOn(k, Math.floor(Math.random() * n))).body;
          minId = Math.min(minId, id);
          maxId = Math.max(maxId, id);
        }
      }),
    );
    // Done when the control plane says (bench/lib/applied.ts: with result?next the agents' last answers wait out a hold).
    await waitApplied({
      m: cfg.commands,
      deadlineMs: 300_000,
      poll: async () => {
        const all = await Promise.all(fleets.map((f) => f.stats(false)));
        return { resultRequests: all.reduce((a, s) => a + s.resultRequests, 0), resultDone: all.flatMap((s) => s.resultDone) };
      },
      succeeded: async () => (await metric(servers[0]!, 'tether_commands', 'state="succeeded"')) - before,
    });
    const fin = await lastFinished(submitters[0]!, minId, maxId);
    const done = fin.applied;
    const seconds = (Math.max(t0, fin.lastFinishedAt) - t0) / 1000;
    const throughput = { commands: cfg.commands, done, seconds: Math.round(seconds * 100) / 100, commandsPerSecond: Math.round(done / seconds) };

    // Quiet window: heartbeats only (every agent every 5 s); CPU of the control planes and of PostgreSQL.
    await sleep(3000);
    log(`replicas ${setup}: quiet window of ${cfg.window} s`);
    await stats(true);
    const cpu0 = servers.map((s) => procSample(s.pid)!);
    const pg0 = setup !== 'sqlite' ? pgServer!.cpuSample() : undefined;
    await sleep(cfg.window * 1000);
    const quiet = await stats(true);
    const hb = quiet.hbOk;
    const cpu1 = servers.map((s) => procSample(s.pid)!);
    const pg1 = setup !== 'sqlite' ? pgServer!.cpuSample() : undefined;
    const windowSeconds = (cpu1[0]!.at - cpu0[0]!.at) / 1000;
    const serverCpu = cpu1.map((c, i) => c.cpuMs - cpu0[i]!.cpuMs);
    const pgCpu = pg0 && pg1 ? treeCpuDelta(pg0, pg1) : undefined;
    const perReplica = [];
    for (let i = 0; i < R; i++) {
      const s = servers[i]!;
      perReplica.push({
        pollsHeld: await metric(s, 'tether_long_polls_held'),
        connections: await metric(s, 'tether_connections', 'protocol="http2"'),
        rssMB: mb(cpu1[i]!.rssBytes),
        cpuPercentInWindow: Math.round((serverCpu[i]! / 10 / windowSeconds) * 10) / 10,
      });
    }
    return {
      setup,
      name: setupName(setup),
      replicas: R,
      durability: setup === 'sqlite' ? durability : `PostgreSQL commit (fsync ${pgServer!.durable ? 'on' : 'off'}, synchronous_commit ${pgServer!.durable ? 'on' : 'off'})`,
      agents: n,
      submitToClaimMs,
      submitAnsweredMs: summarize(answered),
      throughput,
      heartbeats: { perSecond: Math.round(hb / windowSeconds), errors: quiet.hbErr, seconds: Math.round(windowSeconds), serverCpuMsPerHeartbeat: cpuMsPer(serverCpu, hb), postgresCpuMsPerHeartbeat: pgCpu === undefined ? null : cpuMsPer([pgCpu], hb) },
      perReplica,
      postgresPssMB: setup !== 'sqlite' ? mb(pgServer!.pssBytes()) : null,
    };
  } finally {
    for (const c of submitters) c.close();
    await Promise.all(fleets.map((f) => f.stop()));
    for (const s of servers.reverse()) await s.stop();
  }
}

function report(ctx: ReplicasContext, r: SetupResult): void {
  const { row, targets } = ctx;
  const fig = `replicas: ${r.setup}`;
  const d = r.submitToClaimMs;
  const all = d.claimed === ctx.cfg.dispatch;
  row(fig, 'setup, durability', `${r.name}; ${r.durability}`);
  row(fig, `submit → claim, ${r.agents} agents held`, `p50 ${d.p50} ms, p99 ${d.p99} ms (${d.claimed}/${ctx.cfg.dispatch} claimed; POST answered p50 ${r.submitAnsweredMs.p50} ms)${d.sameReplicaP50 !== undefined ? `; p50 same replica ${d.sameReplicaP50} / other ${d.otherReplicaP50} ms` : ''}`, 'p50 ≤ 5 ms, p99 ≤ 25 ms', all && d.p50 <= 5 && d.p99 <= 25);
  const t = r.throughput;
  const allDone = t.done >= t.commands;
  row(fig, `end to end, ${r.agents} agents`, `${t.commandsPerSecond} commands/s (${t.done}/${t.commands} results in ${t.seconds} s)`, '≥ 2,000 commands/s', allDone && t.commandsPerSecond >= 2000);
  const h = r.heartbeats;
  row(fig, 'heartbeats, CPU per heartbeat', `${h.perSecond}/s (${h.errors} errors); control plane${r.replicas > 1 ? 's (sum)' : ''} ${h.serverCpuMsPerHeartbeat} ms${h.postgresCpuMsPerHeartbeat !== null ? `, PostgreSQL ${h.postgresCpuMsPerHeartbeat} ms` : ''}`, 'control plane ≤ 0.25 ms', h.serverCpuMsPerHeartbeat <= 0.25);
  row(fig, 'per replica: polls held, RSS', r.perReplica.map((p, i) => `#${i + 1}: ${p.pollsHeld} held, ${p.rssMB} MB`).join('; ') + (r.postgresPssMB !== null ? `; PostgreSQL ${r.postgresPssMB} MB (PSS, all its processes)` : ''));
  const note = `${r.name}, ${r.agents} agents`;
  targets.add({ name: `submit → claim p50, ${r.name}`, value: d.p50, unit: 'ms', comparison: '<=', target: 5, conditionsMet: all, note });
  targets.add({ name: `submit → claim p99, ${r.name}`, value: d.p99, unit: 'ms', comparison: '<=', target: 25, conditionsMet: all, note });
  targets.add({ name: `commands end to end, ${r.name}`, value: t.commandsPerSecond, unit: 'commands/s', comparison: '>=', target: 2000, conditionsMet: allDone, note: `${t.done}/${t.commands} results, ${r.agents} agents` });
  targets.add({ name: `server CPU per heartbeat, ${r.name}`, value: h.serverCpuMsPerHeartbeat, unit: 'ms', comparison: '<=', target: 0.25, note: `sum over replicas, PostgreSQL's not included${h.postgresCpuMsPerHeartbeat !== null ? ` (${h.postgresCpuMsPerHeartbeat} ms)` : ''}` });
}
