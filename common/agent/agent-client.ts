/**
 * The agents' side of the agent API. Bootstrap goes over one-way TLS (the agent trusts the CA
 * file it was given); everything else over mutual TLS with the issued certificate.
 */
import { HttpClient } from '../http-client.ts';
import { Http2Client } from '../http2-client.ts';
import {
  bootstrapResponseSchema,
  heartbeatResponseSchema,
  pollResponseSchema,
  renewResponseSchema,
  type BootstrapResponse,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type LogLine,
  type PollResponse,
  type ResultRequest,
} from '../wire.ts';
import type { KeyPair } from '../csr.ts';

export interface AgentCredentials {
  certPem: string;
  keyPem: string;
  caPem: string;
}

export async function bootstrapAgent(opts: {
  url: string;
  caPem: string;
  token: string;
  keys: KeyPair;
  aid?: string;
  controlPlane?: boolean;
  nodeName?: string;
}): Promise<BootstrapResponse> {
  // Lazily: node-forge (csr.ts) is needed to make a request, never by a running daemon.
  const { createCsr } = await import('../csr.ts');
  const c = new HttpClient({ baseUrl: opts.url, ca: opts.caPem, userAgent: 'tether-agent' });
  try {
    const body = {
      token: opts.token,
      csr: createCsr(opts.keys, 'tether-agent'),
      ...(opts.aid ? { aid: opts.aid } : {}),
      ...(opts.controlPlane !== undefined ? { controlPlane: opts.controlPlane } : {}),
      ...(opts.nodeName ? { nodeName: opts.nodeName } : {}),
    };
    const res = await c.request('POST', '/v1/bootstrap', body);
    return bootstrapResponseSchema.parse(res.body);
  } finally {
    c.close();
  }
}

/**
 * The agent API over mutual TLS and HTTP/2: the held poll, heartbeats, results and logs share one
 * connection (see ../http2-client.ts).
 */
export class AgentClient {
  private http: Http2Client;
  private readonly url: string;
  private creds: AgentCredentials;
  private connectsBefore = 0;

  constructor(url: string, creds: AgentCredentials) {
    this.url = url;
    this.creds = creds;
    this.http = this.make();
  }

  private make() {
    return new Http2Client({ baseUrl: this.url, ca: this.creds.caPem, cert: this.creds.certPem, key: this.creds.keyPem, userAgent: 'tether-agent', timeoutMs: 30_000 });
  }

  /** Swaps in a renewed certificate; new connections use it. */
  setCertificate(certPem: string): void {
    this.creds = { ...this.creds, certPem };
    const old = this.http;
    this.connectsBefore += old.stats.connects;
    this.http = this.make();
    old.close();
  }

  async poll(waitSeconds: number, signal?: AbortSignal): Promise<PollResponse> {
    const res = await this.http.request('GET', `/v1/agent/poll?wait=${waitSeconds}`, undefined, { signal, timeoutMs: (waitSeconds + 15) * 1000 });
    return pollResponseSchema.parse(res.body);
  }

  async heartbeat(hb: HeartbeatRequest, signal?: AbortSignal): Promise<HeartbeatResponse> {
    const res = await this.http.request('POST', '/v1/agent/heartbeat', hb, { signal, timeoutMs: 10_000 });
    return heartbeatResponseSchema.parse(res.body);
  }

  async report(commandId: number, result: ResultRequest): Promise<{ status: string; state: string }> {
    return (await this.http.request<{ status: string; state: string }>('POST', `/v1/agent/commands/${commandId}/result`, result)).body;
  }

  async logs(commandId: number, leaseId: string, lines: LogLine[]): Promise<void> {
    await this.http.request('POST', `/v1/agent/commands/${commandId}/logs`, { leaseId, lines });
  }

  async renew(csrPem: string): Promise<{ certificate: string; expiresAt: string }> {
    return renewResponseSchema.parse((await this.http.request('POST', '/v1/agent/certificate', { csr: csrPem })).body);
  }

  /** Escape hatch for role-specific routes (e.g. the node agent's VPN routes). */
  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.http.request<T>(method, path, body).then((r) => r.body);
  }

  /**
   * TLS connections made so far, across certificate swaps (a change means the control plane may
   * have restarted: the runtime then sends a full heartbeat).
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
