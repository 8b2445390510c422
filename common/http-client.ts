/**
 * A small JSON-over-HTTPS client on node:https with keep-alive, used by the CLI (bearer token,
 * one-way TLS) and the agents (mutual TLS). Errors say whether retrying can help: transport
 * failures and 5xx are retryable, 4xx are not (the request itself is wrong or refused).
 */
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { TetherError } from './errors.ts';
import { parseRetryAfter } from './agent/retry.plan.ts';

export interface HttpClientOptions {
  baseUrl: string;
  /** PEM of the CA that signed the server certificate. */
  ca?: string;
  /** Client certificate and key for mutual TLS. */
  cert?: string;
  key?: string;
  bearerToken?: string;
  userAgent?: string;
  /** Per-request timeout unless a call gives its own. */
  timeoutMs?: number;
}

export interface HttpResponse<T = unknown> {
  status: number;
  body: T;
  headers: IncomingMessage['headers'];
}

export interface RequestOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Statuses that are returned rather than thrown (2xx always are). */
  accept?: number[];
}

/** An HTTP error response: `status` and the API's `{error:{code,message}}`. */
export class HttpError extends TetherError {
  /** A 503 or 429's `Retry-After`, in milliseconds (agent/retry.plan.ts parses it; the agents honour it). */
  readonly retryAfterMs: number | undefined;
  constructor(status: number, code: string, message: string, retryAfterMs?: number) {
    super(code, message, { status, retryable: status >= 500 || status === 429 });
    this.name = 'HttpError';
    this.retryAfterMs = retryAfterMs;
  }
}

export class HttpClient {
  readonly baseUrl: URL;
  readonly agent: https.Agent;
  private readonly opts: HttpClientOptions;

  constructor(opts: HttpClientOptions) {
    this.opts = opts;
    this.baseUrl = new URL(opts.baseUrl);
    if (this.baseUrl.protocol !== 'https:') throw new TetherError('invalid_url', `the control plane URL must be https:// (got ${opts.baseUrl})`, { status: 400 });
    this.agent = new https.Agent({
      keepAlive: true,
      maxSockets: 16,
      ca: opts.ca,
      cert: opts.cert,
      key: opts.key,
    });
  }

  async request<T = unknown>(method: string, path: string, body?: unknown, ro: RequestOptions = {}): Promise<HttpResponse<T>> {
    const url = new URL(path, this.baseUrl);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    if (this.opts.bearerToken) headers.authorization = `Bearer ${this.opts.bearerToken}`;
    if (this.opts.userAgent) headers['user-agent'] = this.opts.userAgent;

    const res = await new Promise<{ status: number; text: string; headers: IncomingMessage['headers'] }>((resolve, reject) => {
      const req = https.request(url, { method, headers, agent: this.agent, signal: ro.signal }, (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), headers: r.headers }));
        r.on('error', reject);
      });
      const timeoutMs = ro.timeoutMs ?? this.opts.timeoutMs ?? 30_000;
      req.setTimeout(timeoutMs, () => req.destroy(new TetherError('timeout', `no answer from ${url.origin} within ${timeoutMs} ms`, { retryable: true })));
      req.on('error', (err) => reject(wrapTransportError(err, url)));
      req.end(payload);
    });

    return toResponse<T>(method, url, res, ro);
  }

  /** Opens a streaming GET (Server-Sent Events); the caller reads the response. */
  stream(path: string, signal?: AbortSignal): Promise<IncomingMessage> {
    const url = new URL(path, this.baseUrl);
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (this.opts.bearerToken) headers.authorization = `Bearer ${this.opts.bearerToken}`;
    return new Promise((resolve, reject) => {
      const req = https.request(url, { method: 'GET', headers, agent: this.agent, signal }, (r) => {
        if ((r.statusCode ?? 0) >= 400) {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => {
            let e: { code?: string; message?: string } | undefined;
            try {
              e = JSON.parse(Buffer.concat(chunks).toString('utf8')).error;
            } catch {
              /* not JSON */
            }
            reject(new HttpError(r.statusCode ?? 0, e?.code ?? `http_${r.statusCode}`, e?.message ?? `GET ${url.pathname} answered ${r.statusCode}`));
          });
          return;
        }
        resolve(r);
      });
      req.on('error', (err) => reject(wrapTransportError(err, url)));
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** A finished exchange as the caller sees it: 2xx (or an accepted status) returns, anything else throws {@link HttpError}. */
export function toResponse<T>(
  method: string,
  url: URL,
  res: { status: number; text: string; headers: IncomingMessage['headers'] },
  ro: RequestOptions,
): HttpResponse<T> {
  let parsed: unknown = undefined;
  if (res.text.length > 0) {
    try {
      parsed = JSON.parse(res.text);
    } catch {
      parsed = res.text;
    }
  }
  if ((res.status >= 200 && res.status < 300) || ro.accept?.includes(res.status)) {
    return { status: res.status, body: parsed as T, headers: res.headers };
  }
  const err = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
  const retryAfterMs = res.status === 503 || res.status === 429 ? parseRetryAfter(res.headers['retry-after'], Date.now()) : undefined;
  throw new HttpError(res.status, err?.code ?? `http_${res.status}`, err?.message ?? `${method} ${url.pathname} answered ${res.status}`, retryAfterMs);
}

export function wrapTransportError(err: Error, url: URL): Error {
  if (err instanceof TetherError) return err;
  if (err.name === 'AbortError') return err;
  const code = (err as NodeJS.ErrnoException).code ?? 'transport_error';
  return new TetherError('transport_error', `cannot reach ${url.origin}: ${code} ${err.message}`, { retryable: true, cause: err });
}
