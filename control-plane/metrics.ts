/** Prometheus metrics of one control plane (prom-client, a registry of its own). */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface Metrics {
  registry: Registry;
  heartbeats: Counter;
  longPollsHeld: Gauge;
  submitToClaim: Histogram;
  commandsByState: Gauge<'state'>;
  agentsByStatus: Gauge<'status'>;
  /** Ended drift checks (scheduled or manual) by what they found, each counted once. */
  driftChecks: Counter<'result'>;
  /** Syncs autoSync submitted. */
  autoSyncs: Counter;
  /** Agent API requests refused by an agent's request rate (http/agent-rate.ts), by route class. */
  agentRateLimited: Counter<'class'>;
}

export function createMetrics(collect: {
  commandsByState: () => Promise<Record<string, number>>;
  agentsByStatus: () => Promise<Record<string, number>>;
  connections: () => { tls: number; http2: number };
  /** Agent long-polls held now (queue/dispatcher.ts: its count, read at each scrape). */
  heldPolls: () => number;
  /** Instances not deleted, by sync status (synced, drifted, error, unknown). */
  instancesBySyncStatus?: () => Promise<Record<string, number>>;
  /** The durability barrier's counts so far (db/durability.ts): WAL syncs, and the answers that waited for one. */
  durability?: () => { syncs: number; waiters: number };
}): Metrics {
  const registry = new Registry();
  // The process's CPU and memory, chosen by hand: prom-client's default set also walks every
  // active handle on each scrape, i.e. every agent's socket.
  new Gauge({
    name: 'process_cpu_seconds_total',
    help: 'User and system CPU time spent by the control plane, in seconds',
    registers: [registry],
    collect() {
      const u = process.cpuUsage();
      this.set((u.user + u.system) / 1e6);
    },
  });
  new Gauge({
    name: 'process_resident_memory_bytes',
    help: 'Resident memory of the control plane',
    registers: [registry],
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  new Gauge({
    name: 'nodejs_heap_size_bytes',
    help: 'V8 heap: used and total (reserved) bytes',
    labelNames: ['kind'] as const,
    registers: [registry],
    collect() {
      const m = process.memoryUsage();
      this.set({ kind: 'used' }, m.heapUsed);
      this.set({ kind: 'total' }, m.heapTotal);
    },
  });
  new Gauge({
    name: 'tether_connections',
    help: 'Open TLS connections by protocol (agents speak HTTP/2, one connection each)',
    labelNames: ['protocol'] as const,
    registers: [registry],
    collect() {
      const c = collect.connections();
      this.set({ protocol: 'http2' }, c.http2);
      this.set({ protocol: 'http1' }, c.tls - c.http2);
    },
  });
  const heartbeats = new Counter({ name: 'tether_heartbeats_total', help: 'Agent heartbeats received', registers: [registry] });
  const longPollsHeld = new Gauge({
    name: 'tether_long_polls_held',
    help: 'Agent long-polls currently held open',
    registers: [registry],
    collect() {
      this.set(collect.heldPolls());
    },
  });
  const submitToClaim = new Histogram({
    name: 'tether_submit_to_claim_seconds',
    help: 'Time from a command being queued to an agent claiming it',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const commandsByState = new Gauge({
    name: 'tether_commands',
    help: 'Commands by state',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const [state, n] of Object.entries(await collect.commandsByState())) this.set({ state }, n);
    },
  });
  const agentsByStatus = new Gauge({
    name: 'tether_agents',
    help: 'Agents by computed status (revoked agents excluded)',
    labelNames: ['status'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const [status, n] of Object.entries(await collect.agentsByStatus())) this.set({ status }, n);
    },
  });
  new Gauge({
    name: 'tether_instances',
    help: 'Instances (not deleted) by the sync status their last drift check recorded (unknown: never checked)',
    labelNames: ['sync_status'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const counts = { synced: 0, drifted: 0, error: 0, unknown: 0, ...(await collect.instancesBySyncStatus?.()) };
      for (const [sync_status, n] of Object.entries(counts)) this.set({ sync_status }, n);
    },
  });
  const driftChecks = new Counter({ name: 'tether_drift_checks_total', help: 'Drift checks ended (scheduled or manual), by result: synced, drifted, error', labelNames: ['result'] as const, registers: [registry] });
  for (const result of ['synced', 'drifted', 'error']) driftChecks.inc({ result }, 0);
  const autoSyncs = new Counter({ name: 'tether_auto_syncs_total', help: 'Syncs submitted by autoSync after a drift check found drift', registers: [registry] });
  const agentRateLimited = new Counter({ name: 'tether_agent_requests_rate_limited_total', help: "Agent API requests refused 429 by the agent's request rate, by route class", labelNames: ['class'] as const, registers: [registry] });
  // Counters read from the barrier at each scrape (it counts; prom-client only reports the difference).
  const fromBarrier = (name: string, help: string, read: (s: { syncs: number; waiters: number }) => number) => {
    let seen = 0;
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const now = collect.durability ? read(collect.durability()) : 0;
        if (now > seen) this.inc(now - seen);
        seen = Math.max(seen, now);
      },
    });
  };
  fromBarrier('tether_durability_syncs_total', 'WAL syncs made by the group commit (SQLite, durability full); 0 where a commit is durable itself', (s) => s.syncs);
  fromBarrier('tether_durability_sync_waiters_total', 'Answers that waited for a group-commit WAL sync (several share one sync)', (s) => s.waiters);
  return { registry, heartbeats, longPollsHeld, submitToClaim, commandsByState, agentsByStatus, driftChecks, autoSyncs, agentRateLimited };
}
