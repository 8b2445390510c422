/**
 * The console's overview of an account (GET /v1/overview): its clusters with their agents and
 * nodes by status, commands by state and the latest failures. Built from aggregate queries
 * (db/*.repository.ts), so its cost does not grow with what it would take to list: a control
 * plane with 10,000 agents and 100,000 commands answers it without reading them into memory
 * (docs/performance.md, "Console overview").
 */
import { iso, type Clock } from '../../common/clock.ts';
import { COMMAND_STATES, HEALTHY_BELOW_S, OFFLINE_FROM_S, type CommandState } from '../../common/wire.ts';
import type { Db } from '../db/database.ts';
import { clustersHead } from '../db/accounts.repository.ts';
import { countAgentsByCluster } from '../db/agents.repository.ts';
import { countByStateOf, recentFailures } from '../db/commands.repository.ts';

/** Clusters shown in the overview (the rest are counted in clustersTotal). */
export const OVERVIEW_CLUSTERS_MAX = 200;
/** Failures shown in the overview. */
export const OVERVIEW_FAILURES = 10;

export interface StatusCounts {
  healthy: number;
  degraded: number;
  offline: number;
}

export interface Overview {
  generatedAt: string;
  clusters: { cid: string; domain: string; agents: StatusCounts; clusterAgents: StatusCounts; nodes: StatusCounts }[];
  clustersTotal: number;
  agents: StatusCounts;
  clusterAgents: StatusCounts;
  nodes: StatusCounts;
  commands: Record<CommandState, number>;
  recentFailures: { id: number; cluster: string; node: string | null; type: string; state: CommandState; attempts: number; error: { code: string; message: string } | null; createdAt: string; finishedAt: string | null }[];
}

const zero = (): StatusCounts => ({ healthy: 0, degraded: 0, offline: 0 });
const add = (to: StatusCounts, c: StatusCounts) => {
  to.healthy += c.healthy;
  to.degraded += c.degraded;
  to.offline += c.offline;
};

export async function accountOverview(d: { db: Db; clock: Clock }, aid: string): Promise<Overview> {
  const now = d.clock.now();
  const [head, byCluster, byState, failures] = await Promise.all([
    clustersHead(d.db, aid, OVERVIEW_CLUSTERS_MAX),
    countAgentsByCluster(d.db, aid, { healthySince: now - HEALTHY_BELOW_S * 1000, degradedSince: now - OFFLINE_FROM_S * 1000 }),
    countByStateOf(d.db, aid),
    recentFailures(d.db, aid, OVERVIEW_FAILURES),
  ]);
  const agents = zero();
  const clusterAgents = zero();
  const nodes = zero();
  const perCluster = new Map<string, { agents: StatusCounts; clusterAgents: StatusCounts; nodes: StatusCounts }>();
  for (const r of byCluster) {
    let c = perCluster.get(r.cid);
    if (!c) perCluster.set(r.cid, (c = { agents: zero(), clusterAgents: zero(), nodes: zero() }));
    add(c.agents, r);
    add(r.role === 'node' ? c.nodes : c.clusterAgents, r);
    add(agents, r);
    add(r.role === 'node' ? nodes : clusterAgents, r);
  }
  const commands = Object.fromEntries(COMMAND_STATES.map((s) => [s, 0])) as Record<CommandState, number>;
  for (const r of byState) commands[r.state] = r.n;
  return {
    generatedAt: iso(now)!,
    clusters: head.rows.map((c) => ({ cid: c.cid, domain: c.domain, ...(perCluster.get(c.cid) ?? { agents: zero(), clusterAgents: zero(), nodes: zero() }) })),
    clustersTotal: head.total,
    agents,
    clusterAgents,
    nodes,
    commands,
    recentFailures: failures.map((f) => ({
      id: f.id,
      cluster: f.cid,
      node: f.nid,
      type: f.type,
      state: f.state,
      attempts: f.attempts,
      error: f.error ? (JSON.parse(f.error) as { code: string; message: string }) : null,
      createdAt: iso(f.created_at)!,
      finishedAt: iso(f.finished_at),
    })),
  };
}
