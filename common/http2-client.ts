/**
 * The agents' JSON client over HTTP/2 with mutual TLS: one connection per agent carries its held
 * long-poll, heartbeats, results and logs as concurrent streams (with HTTP/1.1 the held poll
 * would pin a connection of its own). The TLS session is kept so a reconnect — after a network
 * failure or a control-plane restart — resumes it instead of doing a full handshake.
 *
 * Same contract as {@link HttpClient.request}: 2xx returns, other statuses throw HttpError, and
 * transport failures are retryable TetherErrors.
 */
import http2 from 'node:http2';
import tls from 'node:tls';
import { isIP } from 'node:net';
import { TetherError } from './errors.ts';
import { toResponse, wrapTransportError, type HttpResponse, type RequestOptions } from './http-client.ts';

/** How long a liveness PING may take before the connection is declared dead. */
const PING_TIMEOUT_MS = 15_000;

export interface Http2ClientOptions {
  baseUrl: string;
  ca: string;
  cert: string;
  key: string;
  userAgent?: string;
  timeoutMs?: number;
  /** Source address (benchmarks spread simulated agents over several loopback addresses). */
  localAddress?: string;
  /** Connect to this address instead of resolving the URL's name; the certificate is still checked against the name. */
  connectTo?: string;
  /** A TLS session to offer on the first connection (carried over from another client). */
  tlsSession?: Buffer;
}

export class Http2Client {
  readonly baseUrl: URL;
  private readonly opts: Http2ClientOptions;
  private session: http2.ClientHttp2Session | undefined;
  private tlsSession: Buffer | undefined;
  private closed = false;
  private pinging: http2.ClientHttp2Session | undefined;
  private readonly secureContext: tls.SecureContext;
  /** TLS connections made, and how many of them resumed a session instead of a full handshake. */
  readonly stats = { connects: 0, resumed: 0 };

  constructor(opts: Http2ClientOptions) {
    this.opts = opts;
    this.baseUrl = new URL(opts.baseUrl);
    this.tlsSession = opts.tlsSession;
    if (this.baseUrl.protocol !== 'https:') throw new TetherError('invalid_url', `the control plane URL must be https:// (got ${opts.baseUrl})`, { status: 400 });
    // Parsed once: a reconnect does not re-read the key and certificates.
    this.secureContext = tls.createSecureContext({ ca: opts.ca, cert: opts.cert, key: opts.key });
  }

  /** Whether the current connection resumed an earlier TLS session (for tests and benchmarks). */
  get resumed(): boolean {
    return (this.session?.socket as tls.TLSSocket | undefined)?.isSessionReused() ?? false;
  }

  /** The TLS session to resume with (undefined before a first handshake), to hand to a successor client. */
  get lastTlsSession(): Buffer | undefined {
    return this.tlsSession;
  }

  /** The address the current (or last) connection reached. */
  get remoteAddress(): string | undefined {
    return this.lastRemote;
  }
  private lastRemote: string | undefined;

  private connect(): http2.ClientHttp2Session {
    if (this.closed) throw new TetherError('client_closed', 'the client was closed', { retryable: false });
    const current = this.session;
    if (current && !current.closed && !current.destroyed) return current;
    const host = this.baseUrl.hostname.replace(/^\[|\]$/g, '');
    const port = Number(this.baseUrl.port || 443);
    const session = http2.connect(this.baseUrl.origin, {
      settings: { enablePush: false },
      createConnection: () => {
        const socket = tls.connect({
          host: this.opts.connectTo ?? host,
          port,
          ...(isIP(host) ? {} : { servername: host }),
          secureContext: this.secureContext,
          ALPNProtocols: ['h2'],
          session: this.tlsSession,
          ...(this.opts.localAddress ? { localAddress: this.opts.localAddress } : {}),
        });
        socket.on('session', (s: Buffer) => {
          this.tlsSession = s;
        });
        socket.once('connect', () => {
          this.lastRemote = socket.remoteAddress;
        });
        socket.once('secureConnect', () => {
          this.stats.connects++;
          if (socket.isSessionReused()) this.stats.resumed++;
        });
        return socket;
      },
    });
    // Failures reach the requests in flight; a broken or closing connection is replaced on the next request.
    session.on('error', () => undefined);
    const forget = () => {
      if (this.session === session) this.session = undefined;
    };
    session.once('close', forget);
    session.once('goaway', forget);
    this.session = session;
    return session;
  }

  async request<T = unknown>(method: string, path: string, body?: unknown, ro: RequestOptions = {}): Promise<HttpResponse<T>> {
    const url = new URL(path, this.baseUrl);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: http2.OutgoingHttpHeaders = { ':method': method, ':path': `${url.pathname}${url.search}` };
    if (payload) headers['content-type'] = 'application/json';
    if (this.opts.userAgent) headers['user-agent'] = this.opts.userAgent;
    const timeoutMs = ro.timeoutMs ?? this.opts.timeoutMs ?? 30_000;

    const res = await new Promise<{ status: number; text: string; headers: Record<string, string | string[] | undefined> }>((resolve, reject) => {
      let session: http2.ClientHttp2Session;
      let stream: http2.ClientHttp2Stream;
      try {
        session = this.connect();
        stream = session.request(headers, { endStream: !payload, ...(ro.signal ? { signal: ro.signal } : {}) });
      } catch (err) {
        reject(wrapTransportError(err as Error, url));
        return;
      }
      let status = 0;
      let resHeaders: Record<string, string | string[] | undefined> = {};
      const chunks: Buffer[] = [];
      stream.on('response', (h) => {
        status = Number(h[':status'] ?? 0);
        resHeaders = h as Record<string, string | string[] | undefined>;
      });
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (status) resolve({ status, text: Buffer.concat(chunks).toString('utf8'), headers: resHeaders });
      });
      stream.on('error', (err) => reject(wrapTransportError(err, url)));
      // Closed without an answer (reset, or the control plane went away mid-request): a retryable
      // transport failure, settled now rather than at the timeout. After an answer this is a no-op.
      stream.on('close', () => reject(new TetherError('transport_error', `the connection to ${url.origin} closed before an answer`, { retryable: true })));
      stream.setTimeout(timeoutMs, () => {
        reject(new TetherError('timeout', `no answer from ${url.origin} within ${timeoutMs} ms`, { retryable: true }));
        stream.close(http2.constants.NGHTTP2_CANCEL);
        this.checkAlive(session);
      });
      if (payload) stream.end(payload);
    });
    return toResponse<T>(method, url, res, ro);
  }

  /**
   * A request went unanswered: is the connection dead (a lost peer sends no FIN) or the control
   * plane just slow? An HTTP/2 PING tells: no answer within PING_TIMEOUT_MS and the connection is
   * dropped (the next request reconnects); an answer keeps it, and the other streams on it (the
   * held poll) with it. Dropping on every slow answer would have a busy control plane's agents all
   * reconnecting at once, making it busier.
   */
  private checkAlive(session: http2.ClientHttp2Session): void {
    if (this.pinging === session || session.destroyed) return;
    this.pinging = session;
    const done = (alive: boolean) => {
      clearTimeout(timer);
      if (this.pinging === session) this.pinging = undefined;
      if (!alive) session.destroy();
    };
    const timer = setTimeout(() => done(false), PING_TIMEOUT_MS);
    try {
      if (!session.ping((err) => done(!err))) done(false);
    } catch {
      done(false);
    }
  }

  close(): void {
    this.closed = true;
    this.session?.destroy();
    this.session = undefined;
  }
}
