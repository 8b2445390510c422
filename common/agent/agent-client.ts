/**
 * The agents' side of the agent API. Bootstrap goes over one-way TLS (the agent trusts the CA
 * file it was given); everything else over mutual TLS with the issued certificate.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { HttpClient, HttpError } from '../http-client.ts';
import { Http2Client } from '../http2-client.ts';
// The answers' schemas from agent-wire.ts (zod/mini), not wire.ts: the node agent's daemon loads no classic zod.
import { bootstrapResponseSchema, heartbeatResponseSchema, pollResponseSchema, renewResponseSchema, resultResponseSchema, type BootstrapResponse, type HeartbeatResponse, type PollResponse, type ResultResponse } from '../agent-wire.ts';
import type { HeartbeatRequest, LogLine, ResultRequest } from '../wire.ts';
import type { KeyPair } from '../csr.ts';
import { describeEndpoint, expandEndpoints, failoverReason, nextEndpoint, parseControlPlaneUrls, type Endpoint, type FailoverReason } from './failover.plan.ts';

export interface AgentCredentials {
  certPem: string;
  keyPem: string;
  caPem: string;
}

/**
 * Bootstrap with the one-time token. With several control-plane URLs, each is tried in turn while
 * the failure is one another replica could answer (unreachable, 5xx); a refusal (4xx) is final.
 */
export async function bootstrapAgent(opts: {
  url: string | readonly string[];
  caPem: string;
  token: string;
  keys: KeyPair;
  aid?: string;
  controlPlane?: boolean;
  nodeName?: string;
}): Promise<BootstrapResponse> {
  // Lazily: node-forge (csr.ts) is needed to make a request, never by a running daemon.
  const { createCsr } = await import('../csr.ts');
  const body = {
    token: opts.token,
    csr: createCsr(opts.keys, 'tether-agent'),
    ...(opts.aid ? { aid: opts.aid } : {}),
    ...(opts.controlPlane !== undefined ? { controlPlane: opts.controlPlane } : {}),
    ...(opts.nodeName ? { nodeName: opts.nodeName } : {}),
  };
  const urls = parseControlPlaneUrls(opts.url);
  for (let i = 0; ; i++) {
    const c = new HttpClient({ baseUrl: urls[i]!, ca: opts.caPem, userAgent: 'tether-agent' });
    try {
      const res = await c.request('POST', '/v1/bootstrap', body);
      return bootstrapResponseSchema.parse(res.body);
    } catch (err) {
      // The token is spent only by an answered bootstrap: trying the next replica after a failure is safe.
      if (i + 1 >= urls.length || !failoverReason(err)) throw err;
    } finally {
      c.close();
    }
  }
}

/** Resolves a name to all its addresses (dns.lookup with `all`; tests give their own). */
export type ResolveAll = (hostname: string) => Promise<string[]>;

const systemResolveAll: ResolveAll = async (hostname) => (await lookup(hostname, { all: true })).map((a) => a.address);

/** How long a failover waits for the resolver before moving on without fresh addresses. */
const RESOLVE_TIMEOUT_MS = 3000;

export interface AgentClientOptions {
  resolveAll?: ResolveAll;
  /** Told of every move to another replica (the daemons log it). */
  onMove?: (move: { from: string; to: string; reason: FailoverReason }) => void;
}

/**
 * The agent API over mutual TLS and HTTP/2: the held poll, heartbeats, results and logs share one
 * connection (see ../http2-client.ts). Given several control-plane URLs (or one name with several
 * addresses) it stays on one replica until a request to it fails in a way another replica could
 * answer (failover.plan.ts), then moves to the next; the caller's backoff paces the retry.
 */
export class AgentClient {
  private http: Http2Client;
  private readonly urls: string[];
  private endpoint: Endpoint;
  private creds: AgentCredentials;
  private connectsBefore = 0;
  private readonly o: AgentClientOptions;
  /** A move in progress: requests wait for it rather than go to the replica that just failed. */
  private moving: Promise<void> | undefined;
  /** Moves to another replica so far. */
  moves = 0;

  constructor(urls: string | readonly string[], creds: AgentCredentials, o: AgentClientOptions = {}) {
    this.urls = parseControlPlaneUrls(urls);
    this.endpoint = { url: this.urls[0]! };
    this.creds = creds;
    this.o = o;
    this.http = this.make();
  }

  private make(tlsSession?: Buffer) {
    return new Http2Client({
      baseUrl: this.endpoint.url,
      ...(this.endpoint.address ? { connectTo: this.endpoint.address } : {}),
      ...(tlsSession ? { tlsSession } : {}),
      ca: this.creds.caPem,
      cert: this.creds.certPem,
      key: this.creds.keyPem,
      userAgent: 'tether-agent',
      timeoutMs: 30_000,
    });
  }

  /** The replica in use: its URL, and the address when a name with several is being walked. */
  get current(): string {
    return describeEndpoint(this.endpoint);
  }

  /** Swaps in a renewed certificate; new connections use it. */
  setCertificate(certPem: string): void {
    this.creds = { ...this.creds, certPem };
    this.replace(this.endpoint);
  }

  private replace(next: Endpoint): void {
    const old = this.http;
    this.connectsBefore += old.stats.connects;
    this.endpoint = next;
    // The session goes along: replicas that share their ticket keys resume it.
    this.http = this.make(old.lastTlsSession);
    old.close();
  }

  /** Which connection answered each error that carries a Retry-After (see retryAfter()). */
  private readonly answeredBy = new WeakMap<object, Http2Client>();

  /**
   * The wait a failed request's answer asked for (a 503 or 429's Retry-After, in ms), when it still
   * applies: the client is still on the replica that said it. After a move to another replica
   * (a draining one's agents go to the next at once) there is nothing to wait for: undefined.
   */
  async retryAfter(err: unknown): Promise<number | undefined> {
    if (!(err instanceof HttpError) || err.retryAfterMs === undefined) return undefined;
    if (this.moving) await this.moving;
    return this.answeredBy.get(err) === this.http ? err.retryAfterMs : undefined;
  }

  /** Runs one request on the current replica; a failure another replica could answer moves the client on. */
  private async call<T>(f: (http: Http2Client) => Promise<T>): Promise<T> {
    if (this.moving) await this.moving;
    const http = this.http;
    try {
      return await f(http);
    } catch (err) {
      if (err instanceof HttpError && err.retryAfterMs !== undefined) this.answeredBy.set(err, http);
      const reason = failoverReason(err);
      // Once per failed connection: the poll, a heartbeat and a log batch failing together move once.
      if (reason && this.http === http && !this.moving) {
        this.moving = this.moveOn(reason, http).finally(() => {
          this.moving = undefined;
        });
      }
      throw err;
    }
  }

  private async moveOn(reason: FailoverReason, failed: Http2Client): Promise<void> {
    const addresses = new Map<string, string[]>();
    const resolveAll = this.o.resolveAll ?? systemResolveAll;
    // Names are resolved again at every move: the set of replicas behind a name changes.
    await Promise.all(
      this.urls.map(async (url) => {
        const host = new URL(url).hostname;
        if (isIP(host.replace(/^\[|\]$/g, ''))) return;
        try {
          const found = await withTimeout(resolveAll(host), RESOLVE_TIMEOUT_MS);
          if (found) addresses.set(url, found);
        } catch {
          /* unresolvable now: dialled by name, and its failure moves on again */
        }
      }),
    );
    const endpoints = expandEndpoints(this.urls, addresses);
    const next = nextEndpoint(endpoints, this.endpoint, failed.remoteAddress);
    if (this.http !== failed) return; // replaced meanwhile (a certificate swap)
    // Nowhere else to go (one replica): the connection is kept, or re-made by the transport when it
    // broke; replacing it on every 5xx would have a whole fleet reconnecting through a storage outage.
    if (next.url === this.endpoint.url && next.address === this.endpoint.address) return;
    const from = this.current;
    this.replace(next);
    this.moves++;
    this.o.onMove?.({ from, to: this.current, reason });
  }

  async poll(waitSeconds: number, signal?: AbortSignal): Promise<PollResponse> {
    const res = await this.call((h) => h.request('GET', `/v1/agent/poll?wait=${waitSeconds}`, undefined, { signal, timeoutMs: (waitSeconds + 15) * 1000 }));
    return pollResponseSchema.parse(res.body);
  }

  async heartbeat(hb: HeartbeatRequest, signal?: AbortSignal): Promise<HeartbeatResponse> {
    const res = await this.call((h) => h.request('POST', '/v1/agent/heartbeat', hb, { signal, timeoutMs: 10_000 }));
    return heartbeatResponseSchema.parse(res.body);
  }

  async report(commandId: number, result: ResultRequest): Promise<{ status: string; state: string }> {
    return (await this.call((h) => h.request<{ status: string; state: string }>('POST', `/v1/agent/commands/${commandId}/result`, result))).body;
  }

  /**
   * Reports a result and, in the same request, claims the next command (`?next=waitSeconds`: held
   * like poll(waitSeconds) when nothing is queued). The answer's `next` is that poll's answer; it
   * is absent when the control plane does not know `next` (one from before it ignores the query):
   * the caller then polls on its own.
   */
  async reportAndPoll(commandId: number, result: ResultRequest, waitSeconds: number, signal?: AbortSignal): Promise<ResultResponse> {
    const res = await this.call((h) => h.request('POST', `/v1/agent/commands/${commandId}/result?next=${waitSeconds}`, result, { signal, timeoutMs: (waitSeconds + 15) * 1000 }));
    return resultResponseSchema.parse(res.body);
  }

  async logs(commandId: number, leaseId: string, lines: LogLine[]): Promise<void> {
    await this.call((h) => h.request('POST', `/v1/agent/commands/${commandId}/logs`, { leaseId, lines }));
  }

  async renew(csrPem: string): Promise<{ certificate: string; expiresAt: string }> {
    return renewResponseSchema.parse((await this.call((h) => h.request('POST', '/v1/agent/certificate', { csr: csrPem }))).body);
  }

  /** Escape hatch for role-specific routes (e.g. the node agent's VPN routes). */
  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.call((h) => h.request<T>(method, path, body)).then((r) => r.body);
  }

  /**
   * TLS connections made so far, across certificate swaps and moves (a change means the control
   * plane may have restarted or another replica answers: the runtime then sends a full heartbeat).
   */
  get connections(): number {
    return this.connectsBefore + this.http.stats.connects;
  }

  /** Whether the current connection resumed a TLS session (benchmarks and tests). */
  get resumedTls(): boolean {
    return this.http.resumed;
  }

  close(): void {
    this.http.close();
  }
}

/** `p`, or undefined when it takes longer than `ms`. */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<undefined>((r) => (t = setTimeout(() => r(undefined), ms)))]).finally(() => clearTimeout(t));
}
