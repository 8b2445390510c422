/**
 * A fixture generator for the console's reads (issue 14): fills a control plane's database with
 * clusters, agents (nodes and cluster agents, every heartbeat age, some revoked) and commands in
 * every state, written straight into SQLite in one transaction (this measures and checks the
 * reads, not the API). Deterministic; it answers what it wrote, counted here in JavaScript, so a
 * test can hold the SQL aggregates against it.
 */
import type SQLite from 'better-sqlite3';
import type { Db } from '../../control-plane/db/database.ts';
import { COMMAND_STATES, HEALTHY_BELOW_S, OFFLINE_FROM_S, type CommandState } from '../../common/wire.ts';

export interface SeedOptions {
  aid: string;
  clusters: number;
  agents: number;
  commands: number;
  now: number;
  /** First agent number (agent ids are global: a second account's seed starts past the first's). */
  offset?: number;
}

type Counts = { healthy: number; degraded: number; offline: number };
export interface Seeded {
  clusters: string[];
  /** Unrevoked agents by cluster and role. */
  byCluster: Map<string, { nodes: Counts; clusterAgents: Counts }>;
  commands: Record<CommandState, number>;
  /** Ids of the failed and timed-out commands, newest first. */
  failures: number[];
}

const zero = (): Counts => ({ healthy: 0, degraded: 0, offline: 0 });
/** Heartbeat ages cycled through (ms; null: never): healthy, degraded, offline. */
const AGES = [1_000, 3_000, 9_000, null, 12_000, 29_000, 31_000, 3_600_000, 5_000, 20_000, 60_000];
const STATES: CommandState[] = ['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'failed', 'queued', 'running', 'cancelled', 'timed_out', 'succeeded'];

export function seedConsoleData(sqlite: SQLite.Database, o: SeedOptions): Seeded {
  const clusters = Array.from({ length: o.clusters }, (_, i) => `c${String(i).padStart(3, '0')}`);
  const byCluster = new Map(clusters.map((c) => [c, { nodes: zero(), clusterAgents: zero() }]));
  const commands = Object.fromEntries(COMMAND_STATES.map((s) => [s, 0])) as Record<CommandState, number>;
  const failures: number[] = [];
  const insCluster = sqlite.prepare(`INSERT INTO clusters (aid, cid, domain, created_at) VALUES (?, ?, ?, ?)`);
  const insAgent = sqlite.prepare(
    `INSERT INTO agents (id, aid, cid, role, nid, control_plane, created_at, revoked_at, last_heartbeat_at, heartbeats, version, metrics, vpn)
     VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, 0, '1.0.0', NULL, NULL)`,
  );
  const insCommand = sqlite.prepare(
    `INSERT INTO commands (aid, cid, nid, type, spec, state, timeout_seconds, max_attempts, attempts, created_at, finished_at, error)
     VALUES (?, ?, NULL, ?, '{}', ?, 600, 1, 1, ?, ?, ?) RETURNING id`,
  ).pluck();
  sqlite.transaction(() => {
    for (const c of clusters) insCluster.run(o.aid, c, `${c}.${o.aid}.tether.local`, o.now - 86_400_000);
    for (let i = 0; i < o.agents; i++) {
      const cid = clusters[i % clusters.length]!;
      const role = i % 4 === 0 ? 'cluster-agent' : 'node';
      const age = AGES[i % AGES.length]!;
      const revoked = i % 97 === 5;
      insAgent.run(`${role === 'node' ? 'nd' : 'ca'}-${String(i + (o.offset ?? 0)).padStart(10, '0')}`, o.aid, cid, role, role === 'node' ? `n${i}` : null, o.now - 3_600_000 + i, revoked ? o.now - 1000 : null, age === null ? null : o.now - age);
      if (revoked) continue;
      const status = age === null || age >= OFFLINE_FROM_S * 1000 ? 'offline' : age >= HEALTHY_BELOW_S * 1000 ? 'degraded' : 'healthy';
      const entry = byCluster.get(cid)!;
      (role === 'node' ? entry.nodes : entry.clusterAgents)[status]++;
    }
    for (let j = 0; j < o.commands; j++) {
      const state = STATES[j % STATES.length]!;
      const terminal = state !== 'queued' && state !== 'running';
      const error = state === 'failed' || state === 'timed_out' ? JSON.stringify({ code: state === 'failed' ? 'executor_error' : 'timed_out', message: `seeded ${j}`, retryable: false }) : null;
      const id = insCommand.get(o.aid, clusters[j % clusters.length], j % 2 ? 'manifest' : 'helm', state, o.now - (o.commands - j) * 10, terminal ? o.now - (o.commands - j) * 5 : null, error) as number;
      commands[state]++;
      if (error) failures.unshift(id);
    }
  })();
  return { clusters, byCluster, commands, failures };
}

/**
 * The same rows through Kysely, for either dialect (the PostgreSQL pass of the console reads test):
 * slower than the SQLite statements above, fine for a test's few thousand rows.
 */
export async function seedConsoleDataDb(db: Db, o: SeedOptions): Promise<Seeded> {
  const clusters = Array.from({ length: o.clusters }, (_, i) => `c${String(i).padStart(3, '0')}`);
  const byCluster = new Map(clusters.map((c) => [c, { nodes: zero(), clusterAgents: zero() }]));
  const commands = Object.fromEntries(COMMAND_STATES.map((s) => [s, 0])) as Record<CommandState, number>;
  const failures: number[] = [];
  await db.transaction().execute(async (tx) => {
    await tx.insertInto('clusters').values(clusters.map((c) => ({ aid: o.aid, cid: c, domain: `${c}.${o.aid}.tether.local`, created_at: o.now - 86_400_000 }))).execute();
    const agents = [];
    for (let i = 0; i < o.agents; i++) {
      const cid = clusters[i % clusters.length]!;
      const role = i % 4 === 0 ? ('cluster-agent' as const) : ('node' as const);
      const age = AGES[i % AGES.length]!;
      const revoked = i % 97 === 5;
      agents.push({ id: `${role === 'node' ? 'nd' : 'ca'}-${String(i + (o.offset ?? 0)).padStart(10, '0')}`, aid: o.aid, cid, role, nid: role === 'node' ? `n${i}` : null, control_plane: 0, created_at: o.now - 3_600_000 + i, revoked_at: revoked ? o.now - 1000 : null, last_heartbeat_at: age === null ? null : o.now - age, heartbeats: 0, version: '1.0.0', metrics: null, vpn: null });
      if (revoked) continue;
      const status = age === null || age >= OFFLINE_FROM_S * 1000 ? 'offline' : age >= HEALTHY_BELOW_S * 1000 ? 'degraded' : 'healthy';
      const entry = byCluster.get(cid)!;
      (role === 'node' ? entry.nodes : entry.clusterAgents)[status]++;
    }
    for (let k = 0; k < agents.length; k += 500) await tx.insertInto('agents').values(agents.slice(k, k + 500) as never).execute();
    // One command per statement: their ids, in order, are what the failures list is checked against.
    for (let j = 0; j < o.commands; j++) {
      const state = STATES[j % STATES.length]!;
      const terminal = state !== 'queued' && state !== 'running';
      const error = state === 'failed' || state === 'timed_out' ? JSON.stringify({ code: state === 'failed' ? 'executor_error' : 'timed_out', message: `seeded ${j}`, retryable: false }) : null;
      const row = { aid: o.aid, cid: clusters[j % clusters.length]!, nid: null, type: j % 2 ? 'manifest' : 'helm', spec: '{}', state, timeout_seconds: 600, max_attempts: 1, attempts: 1, created_at: o.now - (o.commands - j) * 10, finished_at: terminal ? o.now - (o.commands - j) * 5 : null, error };
      const { id } = await tx.insertInto('commands').values(row as never).returning('id').executeTakeFirstOrThrow();
      commands[state]++;
      if (error) failures.unshift(Number(id));
    }
  });
  return { clusters, byCluster, commands, failures };
}
