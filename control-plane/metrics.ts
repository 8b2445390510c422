/** Prometheus metrics of one control plane (prom-client, a registry of its own). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  heartbeats: Counter;
  longPollsHeld: Gauge;
  submitToClaim: Histogram;
  commandsByState: Gauge<'state'>;
  agentsByStatus: Gauge<'status'>;
}

export function createMetrics(collect: {
  commandsByState: () => Promise<Record<string, number>>;
  agentsByStatus: () => Promise<Record<string, number>>;
}): Metrics {
  const registry = new Registry();
  // process_* and nodejs_* (CPU, RSS, heap, event-loop lag): an operator's first look at a busy control plane
  collectDefaultMetrics({ register: registry });
  const heartbeats = new Counter({ name: 'tether_heartbeats_total', help: 'Agent heartbeats received', registers: [registry] });
  const longPollsHeld = new Gauge({ name: 'tether_long_polls_held', help: 'Agent long-polls currently held open', registers: [registry] });
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
  return { registry, heartbeats, longPollsHeld, submitToClaim, commandsByState, agentsByStatus };
}
