/**
 * The pure parts of `npm run bench -- --only replicas` (bench/replicas.ts): its options, how
 * agents are spread over the replicas, which replica a submission goes to, and the figures
 * summed over several processes.
 */

export interface ReplicasConfig {
  /** Simulated agents, spread over the replicas of a setup. */
  agents: number;
  /** Commands of the end-to-end throughput phase. */
  commands: number;
  /** Commands of the dispatch phase, submitted one at a time. */
  dispatch: number;
  /** Seconds of the quiet window that measures heartbeats and CPU. */
  window: number;
  /** PostgreSQL with fsync and synchronous_commit on (durable like SQLite's barrier), or off. */
  pgDurable: boolean;
  /** Which setups run, in order. */
  setups: Setup[];
}

export type Setup = 'sqlite' | 'pg1' | 'pg2';
export const SETUPS: readonly Setup[] = ['sqlite', 'pg1', 'pg2'];
export const replicasOf = (s: Setup): number => (s === 'pg2' ? 2 : 1);
export const setupName = (s: Setup): string => (s === 'sqlite' ? 'SQLite, 1 server' : s === 'pg1' ? 'PostgreSQL, 1 replica' : 'PostgreSQL, 2 replicas');

export const REPLICAS_DEFAULTS: ReplicasConfig = { agents: 500, commands: 5000, dispatch: 500, window: 30, pgDurable: true, setups: [...SETUPS] };

/**
 * `--replicas agents=2000,commands=20000,dispatch=1000,window=60,pg-durable=off,setups=pg1+pg2`:
 * one flag (bench/main.ts parses its flags strictly), each key optional. Throws on an unknown key
 * or a bad value.
 */
export function parseReplicasOption(s: string | undefined): ReplicasConfig {
  const c: ReplicasConfig = { ...REPLICAS_DEFAULTS, setups: [...REPLICAS_DEFAULTS.setups] };
  if (!s) return c;
  for (const part of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const [k, v, ...rest] = part.split('=');
    if (v === undefined || rest.length) throw new Error(`--replicas: '${part}' is not key=value`);
    const int = (min: number, max: number) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--replicas: ${k} must be an integer from ${min} to ${max}`);
      return n;
    };
    switch (k) {
      case 'agents':
        c.agents = int(2, 100_000);
        break;
      case 'commands':
        c.commands = int(1, 10_000_000);
        break;
      case 'dispatch':
        c.dispatch = int(1, 1_000_000);
        break;
      case 'window':
        c.window = int(5, 3600);
        break;
      case 'pg-durable':
        if (v !== 'on' && v !== 'off') throw new Error('--replicas: pg-durable must be on or off');
        c.pgDurable = v === 'on';
        break;
      case 'setups': {
        const list = v.split('+');
        for (const x of list) if (!SETUPS.includes(x as Setup)) throw new Error(`--replicas: setups are ${SETUPS.join('+')}`);
        c.setups = SETUPS.filter((x) => list.includes(x));
        break;
      }
      default:
        throw new Error(`--replicas: unknown key '${k}' (agents, commands, dispatch, window, pg-durable, setups)`);
    }
  }
  return c;
}

/**
 * Agents 0..n-1 over `replicas` replicas: contiguous slices as even as can be (the first ones one
 * larger), so each replica's load generators take a range of identities. An agent given every
 * replica's URL, its own first: it stays there while that replica answers.
 */
export function spreadAgents(n: number, replicas: number): { replica: number; from: number; to: number }[] {
  const out: { replica: number; from: number; to: number }[] = [];
  let from = 0;
  for (let r = 0; r < replicas; r++) {
    const size = Math.floor(n / replicas) + (r < n % replicas ? 1 : 0);
    out.push({ replica: r, from, to: from + size });
    from += size;
  }
  return out;
}

/** The replica that holds agent `i` under spreadAgents(n, replicas). */
export function replicaOfAgent(i: number, n: number, replicas: number): number {
  const s = spreadAgents(n, replicas).find((x) => i >= x.from && i < x.to);
  if (!s) throw new Error(`agent ${i} is not one of ${n}`);
  return s.replica;
}

/** Submissions alternate between the replicas: the k-th goes to replica k mod R. */
export const replicaOfSubmission = (k: number, replicas: number): number => k % replicas;

/** CPU time in ms per operation from CPU time summed over processes; NaN with no operations. */
export function cpuMsPer(cpuMsByProcess: number[], operations: number): number {
  if (!(operations > 0)) return NaN;
  const total = cpuMsByProcess.reduce((a, b) => a + b, 0);
  return Math.round((total / operations) * 1000) / 1000;
}

/**
 * CPU time (ms) a process tree used between two samples, each a map pid → CPU ms (the root's own
 * plus its reaped children's): the later sum minus the earlier one. A process started meanwhile
 * counts all of its time; one gone by the later sample has all of its time in the root's reaped
 * children's time, less what the earlier sample had of it.
 */
export function treeCpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let ms = 0;
  for (const t of after.values()) ms += t;
  for (const t of before.values()) ms -= t;
  return Math.max(0, Math.round(ms));
}
