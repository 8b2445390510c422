/**
 * Which control-plane replica an agent talks to, decided without I/O. An agent is given one or
 * several control-plane URLs (a list, or one name with several addresses); it stays on one until
 * that one fails — the connection fails or times out, or the replica answers 5xx (`503 draining`
 * during a replica's shutdown) — and then moves to the next, round robin. The agent's existing
 * backoff and jitter (runtime.ts) pace the retries; this file only says where the next one goes.
 *
 * A 4xx never moves an agent: the request itself was refused (a stale lease, a revoked
 * certificate), and every replica of one control plane would refuse it the same way.
 */
import { TetherError } from '../errors.ts';
import { HttpError } from '../http-client.ts';

/** One place to dial: a control-plane URL, and the address to connect to when its name has several. */
export interface Endpoint {
  url: string;
  /** Connect here instead of resolving the URL's name (TLS still verifies the URL's name). */
  address?: string;
}

export type FailoverReason = 'unreachable' | 'server_error' | 'draining';

const MAX_URLS = 16;

/**
 * The control-plane URLs of an agent's configuration: one URL, a list, or one comma- or
 * space-separated string (`TETHER_URL=https://a:8443,https://b:8443`). Each must be https://,
 * without user, path, query or fragment; duplicates are dropped. Throws a TetherError (400) naming
 * what is wrong.
 */
export function parseControlPlaneUrls(input: string | readonly string[]): string[] {
  const parts = (typeof input === 'string' ? [input] : input).flatMap((s) => s.split(/[\s,]+/)).filter((s) => s !== '');
  if (parts.length === 0) throw new TetherError('invalid_url', 'no control plane URL given', { status: 400 });
  if (parts.length > MAX_URLS) throw new TetherError('invalid_url', `at most ${MAX_URLS} control plane URLs (got ${parts.length})`, { status: 400 });
  const out: string[] = [];
  for (const p of parts) {
    let u: URL;
    try {
      u = new URL(p);
    } catch {
      throw new TetherError('invalid_url', `not a URL: ${p}`, { status: 400 });
    }
    if (u.protocol !== 'https:') throw new TetherError('invalid_url', `the control plane URL must be https:// (got ${p})`, { status: 400 });
    if (u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) {
      throw new TetherError('invalid_url', `a control plane URL is https://host[:port] only (got ${p})`, { status: 400 });
    }
    if (!out.includes(u.origin)) out.push(u.origin);
  }
  return out;
}

/** Whether a failed request should move the agent to another replica, and why. */
export function failoverReason(err: unknown): FailoverReason | undefined {
  if (err instanceof HttpError) {
    if (err.status === 503 && err.code === 'draining') return 'draining';
    return err.status >= 500 ? 'server_error' : undefined;
  }
  // The transport's own failures (http-client.ts: refused, reset, closed before an answer, no answer in time).
  if (err instanceof TetherError && (err.code === 'transport_error' || err.code === 'timeout') && err.retryable) return 'unreachable';
  return undefined;
}

/**
 * Every endpoint, in configuration order: a URL whose name resolved to several addresses gives one
 * endpoint per address (in the resolver's order), any other URL one endpoint dialled by name.
 */
export function expandEndpoints(urls: readonly string[], addresses: ReadonlyMap<string, readonly string[]>): Endpoint[] {
  const out: Endpoint[] = [];
  for (const url of urls) {
    const found = [...new Set(addresses.get(url) ?? [])];
    if (found.length <= 1) out.push({ url });
    else for (const address of found) out.push({ url, address });
  }
  return out;
}

/**
 * Where to go after `failed` failed: the endpoint after it in `endpoints`, wrapping around. The
 * failed endpoint is found by URL and address; `connectedTo` is the address the failed connection
 * actually reached (dialled by name, the resolver chose it), so a name's next address is tried
 * next. With one endpoint the answer is that endpoint (reconnect to it).
 */
export function nextEndpoint(endpoints: readonly Endpoint[], failed: Endpoint, connectedTo?: string): Endpoint {
  if (endpoints.length === 0) return failed;
  const address = failed.address ?? connectedTo;
  let at = endpoints.findIndex((e) => e.url === failed.url && address !== undefined && e.address === address);
  if (at < 0) at = endpoints.findIndex((e) => e.url === failed.url);
  if (at < 0) return endpoints[0]!;
  return endpoints[(at + 1) % endpoints.length]!;
}

/** How an endpoint is named in logs and tests: the URL, and the address when one was chosen. */
export function describeEndpoint(e: Endpoint): string {
  return e.address ? `${e.url} (${e.address})` : e.url;
}
