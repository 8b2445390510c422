/**
 * The heartbeat's body, parsed. Every agent sends one every 5 s, nearly always the same shape:
 * `running` (usually empty), a few `metrics` that moved, `version` once a minute. zod's parse of
 * that shape allocated ~7 KB per heartbeat (issue 18's heap profile: its issue lists, contexts and
 * the copied output), garbage that 4,000 heartbeats/s turn into scavenges. So the shape agents send
 * is checked here by hand, and whatever this check is not sure of (an unknown key, `vpn`, a number
 * out of range, a non-integer id, anything unusual) goes to `heartbeatRequestSchema` as before: the
 * schema alone decides what is refused and how, and this path only accepts bodies the schema
 * accepts, with the same value (`heartbeat-body.test.ts` holds both to that with hostile bodies).
 */
import { heartbeatRequestSchema, type HeartbeatBody } from '../../common/wire.ts';

/** metricsSchema's number fields and their upper bounds (all have a lower bound of 0). */
const METRIC_MAX: Record<string, number> = {
  cpuPercent: 100_000,
  memoryTotalBytes: Infinity,
  memoryUsedBytes: Infinity,
  diskTotalBytes: Infinity,
  diskUsedBytes: Infinity,
  uptimeSeconds: Infinity,
  rssBytes: Infinity,
};

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;

function plainMetrics(m: unknown): boolean {
  if (!isPlainObject(m)) return false;
  for (const k in m) {
    if (!Object.hasOwn(m, k)) return false;
    const v = m[k];
    if (k === 'load') {
      if (!Array.isArray(v) || v.length > 3) return false;
      for (let i = 0; i < v.length; i++) if (typeof v[i] !== 'number' || !Number.isFinite(v[i])) return false;
      continue;
    }
    const max = Object.hasOwn(METRIC_MAX, k) ? METRIC_MAX[k] : undefined;
    if (max === undefined || typeof v !== 'number' || !Number.isFinite(v) || !(v >= 0) || !(v <= max)) return false;
  }
  return true;
}

function plainRunning(r: unknown): boolean {
  if (!Array.isArray(r) || r.length > 1000) return false;
  for (let i = 0; i < r.length; i++) if (!Number.isSafeInteger(r[i])) return false;
  return true;
}

/**
 * The body of the common shape, checked without zod, or undefined when it is not that shape
 * (the caller then asks the schema). Takes over the parsed JSON (fresh from JSON.parse, held by no one else).
 */
export function plainHeartbeat(body: unknown): HeartbeatBody | undefined {
  if (!isPlainObject(body)) return undefined;
  let running: unknown;
  for (const k in body) {
    if (!Object.hasOwn(body, k)) return undefined;
    const v = body[k];
    if (k === 'running') {
      if (!plainRunning(v)) return undefined;
      running = v;
    } else if (k === 'metrics') {
      if (!plainMetrics(v)) return undefined;
    } else if (k === 'version') {
      if (typeof v !== 'string' || v.length > 64) return undefined;
    } else return undefined; // vpn (the node agents' state, checked by jsonValue) and anything else: the schema
  }
  if (running === undefined) body.running = [];
  return body as HeartbeatBody;
}

/** The heartbeat route's parse: the common shape by hand, anything else by the schema (which refuses as before). */
export function parseHeartbeat(body: unknown): HeartbeatBody {
  return plainHeartbeat(body) ?? heartbeatRequestSchema.parse(body);
}
