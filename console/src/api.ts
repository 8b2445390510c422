/**
 * The console's only way to the control plane: the REST API of docs/api.openapi.yaml, same origin.
 * Signed in, the browser holds an HttpOnly session cookie (POST /v1/sessions trades the API token
 * for it); the CSRF token it answers lives in memory only (a signal) and goes with every request
 * that is not a GET. The API token itself is sent once and never kept.
 */
import { signal } from '@preact/signals';

export interface Session {
  csrfToken: string;
  expiresAt: string;
  account: unknown;
}

/** undefined: not known yet (the first GET /v1/sessions/current is on its way); null: signed out. */
export const session = signal<Session | null | undefined>(undefined);

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function api<T>(method: string, path: string, body?: unknown, opts: { signal?: AbortSignal } = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const csrf = session.value?.csrfToken;
  if (method !== 'GET' && csrf) headers['x-csrf-token'] = csrf;
  const res = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const e = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
    // A session that ended (expired, revoked elsewhere) sends the user back to sign-in.
    if (res.status === 401 && !path.startsWith('/v1/sessions')) session.value = null;
    throw new ApiError(res.status, e?.code ?? `http_${res.status}`, e?.message ?? `${method} ${path}: HTTP ${res.status}`);
  }
  return json as T;
}

export async function loadSession(): Promise<void> {
  try {
    session.value = await api<Session>('GET', '/v1/sessions/current');
  } catch {
    session.value = null;
  }
}

export async function signIn(token: string): Promise<void> {
  session.value = await api<Session>('POST', '/v1/sessions', { token });
}

export async function signOut(): Promise<void> {
  try {
    await api('DELETE', '/v1/sessions/current');
  } finally {
    session.value = null;
  }
}

export const errorText = (e: unknown): string => (e instanceof ApiError ? `${e.message} (${e.code})` : e instanceof Error ? e.message : String(e));

// ------------------------------------------------------------------ views (as the API answers them)

export type AgentStatus = 'healthy' | 'degraded' | 'offline';
export interface Agent {
  id: string;
  cid: string;
  role: 'node' | 'cluster-agent';
  nid: string | null;
  controlPlane: boolean;
  status: AgentStatus;
  revoked: boolean;
  lastHeartbeatAt: string | null;
  secondsSinceHeartbeat: number | null;
  version: string | null;
  metrics: Record<string, unknown> | null;
  vpn: Record<string, unknown> | null;
  createdAt: string;
}
export const COMMAND_STATES = ['queued', 'claimed', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'] as const;
export type CommandState = (typeof COMMAND_STATES)[number];
export const TERMINAL: readonly string[] = ['succeeded', 'failed', 'cancelled', 'timed_out'];
export interface Command {
  id: number;
  target: { cluster: string; node?: string };
  type: string;
  spec: unknown;
  state: CommandState;
  attempts: number;
  maxAttempts: number;
  timeoutSeconds: number;
  claimedBy: string | null;
  outputs?: Record<string, unknown> | null;
  error: { code: string; message: string; retryable?: boolean } | null;
  cancelRequested: boolean;
  createdAt: string;
  claimedAt: string | null;
  finishedAt: string | null;
}
export interface Cluster {
  cid: string;
  aid: string;
  domain: string;
}
export interface Instance {
  osid: string;
  cluster: string;
  namespace: string;
  host: string;
  ports: Record<string, string>;
  bundle: { source: string; name: string; version: string; commit: string };
  inputs: Record<string, unknown>;
  state: string;
  version: number;
  job: { id: number; action: string; state: string; error: { code: string; message: string } | null };
  outputs: Record<string, unknown>;
  sensitiveOutputs: Record<string, unknown>;
  syncStatus: 'synced' | 'drifted' | 'error' | 'unknown';
  lastCheckedAt: string | null;
  createdAt: string;
  updatedAt: string;
}
export interface InstanceVersion {
  version: number;
  action: string;
  createdAt: string;
  bundle: { name: string; version: string; commit: string };
  inputs: Record<string, unknown>;
  job: { id: number; state: string | null } | null;
}
export interface BundleInput {
  type: 'string' | 'number' | 'boolean';
  description?: string;
  required: boolean;
  default?: string | number | boolean;
}
export interface BundleSource {
  name: string;
  url: string;
  ref: string;
  path: string;
  /** The commit registration resolved, and the bundle there (null: it did not validate, or not known). */
  commit: string | null;
  bundle: { name: string; version: string; description?: string; inputs: Record<string, BundleInput> } | null;
  bundleError?: string;
}

// ------------------------------------------------------------------ the first page's data, early

const early = new Map<string, Promise<unknown>>();
/** Starts a GET while the session check is under way (the first page then waits for one round trip, not two). */
export function prefetch(path: string): void {
  const p = api('GET', path);
  p.catch(() => undefined); // read (and its error shown) by the page that takes it
  early.set(path, p);
}
/** The prefetched answer for `path`, once; undefined when none was started. */
export function takePrefetched<T>(path: string): Promise<T> | undefined {
  const p = early.get(path) as Promise<T> | undefined;
  early.delete(path);
  return p;
}
