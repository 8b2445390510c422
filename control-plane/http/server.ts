/**
 * One TLS port, two HTTP versions. Clients that offer HTTP/1.1 (the CLI, curl, browsers) get
 * HTTP/1.1 and the whole API through Express; clients that offer only `h2` (the agents) get
 * HTTP/2, which serves the agent API alone, so an agent's held long-poll and its heartbeats,
 * results and logs share one connection (one socket and one TLS state per agent instead of two).
 *
 * Client certificates are requested and verified per route (bootstrap and the admin API work
 * without one). TLS session tickets are encrypted with keys kept in the data folder, so agents
 * resume their sessions across a restart of the control plane instead of all redoing full
 * handshakes at once.
 *
 * Hostile clients meet timeouts at every stage (TLS handshake, HTTP/1.1 headers, whole request,
 * idle keep-alive, HTTP/2 sessions with no open stream), a cap on unauthenticated connections
 * (connection-guard.ts), and JSON errors for what Node's HTTP parser refuses (431, 408, 400).
 * An agent's held long-poll is an open stream on an authenticated session: no timeout applies.
 */
import http from 'node:http';
import http2 from 'node:http2';
import tls from 'node:tls';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { RequestListener } from 'node:http';
import { writeFileAtomic } from '../../common/files.ts';
import type { Logger } from '../../common/logger.ts';
import { AgentApi } from './agent.routes.ts';
import { serveAgentStream } from './agent-stream.ts';
import { runRequest } from '../db/write-batch.ts';
import { ConnectionGuard, defaultUnauthenticatedTotal } from './connection-guard.ts';
import { relaxHeapGrowthWhileAgentsReturn } from './return-heap.ts';

/** The transport limits (config.ts), all in milliseconds except the caps. */
export interface TransportLimits {
  handshakeTimeoutMs: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  unauthenticatedPerAddress: number;
  unauthenticatedTotal?: number | undefined;
}

export interface ApiServerOptions {
  key: string;
  cert: string;
  ca: string[];
  /** Express (HTTP/1.1, every route). */
  app: RequestListener;
  agentApi: AgentApi;
  ticketKeyFile: string;
  /**
   * Session-ticket keys kept elsewhere (replicas: in the database, pki/shared-ca.ts) and set with
   * setTicketKeys(); the file is then neither read nor rotated.
   */
  ticketKeys?: Buffer;
  limits: TransportLimits;
  log: Logger;
  now?: () => number;
}

/**
 * Session-ticket keys are replaced every 12 h while running (tickets made with older keys then
 * need a full handshake) and at start when the kept ones are older than a day.
 */
const TICKET_KEY_ROTATE_MS = 12 * 3600 * 1000;
const TICKET_KEY_MAX_AGE_MS = 24 * 3600 * 1000;

/**
 * TLS 1.3 preferred (Node's default maximum); TLS 1.2 only with ECDHE and AEAD ciphers, for the
 * Tether CA's ECDSA server certificate and an operator's RSA or ECDSA one (public-cert.ts).
 */
const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
];
const TLS13_CIPHERS = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];

export class ApiServer {
  private readonly tlsServer: tls.Server;
  private readonly sockets = new Set<tls.TLSSocket>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private inFlight = 0;
  private readonly idle: (() => void)[] = [];
  private readonly rotation: NodeJS.Timeout;
  private closing = false;
  /** Ends the heap's start-up window (return-heap.plan.ts). */
  private endReturnHeap: (() => void) | undefined;
  private publicCert: { context: tls.SecureContext; serves(servername: string): boolean } | undefined;
  private readonly h1: http.Server;
  readonly guard: ConnectionGuard;
  /** `--admin-listen`: a listening socket of its own for the admin API (adminListen below). */
  private adminServer: net.Server | undefined;
  private readonly adminRaw = new WeakSet<net.Socket>();

  constructor(o: ApiServerOptions) {
    const lim = o.limits;
    this.guard = new ConnectionGuard({
      unauthenticatedPerAddress: lim.unauthenticatedPerAddress,
      unauthenticatedTotal: lim.unauthenticatedTotal ?? defaultUnauthenticatedTotal(),
    });
    const h1 = http.createServer(
      {
        keepAliveTimeout: lim.idleTimeoutMs,
        headersTimeout: lim.headersTimeoutMs,
        requestTimeout: lim.requestTimeoutMs,
        connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(Math.min(lim.headersTimeoutMs, lim.requestTimeoutMs) / 4))),
      },
      (req, res) => {
        this.track(res);
        // The idle timeout below is for connections with no request in progress: a request being
        // answered (a slow git fetch, a followed log) is not cut by it.
        res.on('timeout', () => {});
        if (this.closing) res.shouldKeepAlive = false; // answered, then the connection closes
        // In a request's scope: the durability barrier refuses a request that was in progress when a write batch was lost (db/write-batch.ts).
        runRequest(() => {
          if (AgentApi.handles(req.url)) void o.agentApi.handle(req, res, req.socket as tls.TLSSocket);
          else o.app(req, res);
        });
      },
    );
    // A connection that sends no request at all, or nothing after its last answer.
    h1.setTimeout(lim.idleTimeoutMs);
    // Node checks the header and request timeouts of the connections it tracks, and starts
    // tracking on 'listening': this server never listens (the TLS server hands it connections).
    h1.emit('listening');
    h1.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      o.log.debug({ err: { code: err.code, message: err.message }, peer: (socket as net.Socket).remoteAddress }, 'HTTP/1.1 client error');
      const answer = clientErrorAnswer(err.code, lim);
      if (!answer || !socket.writable || (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent) return void socket.destroy();
      socket.end(answer);
    });
    this.h1 = h1;
    // Everything on HTTP/2 goes to the agent API, which answers any other path 404. Streams are
    // served without the compatibility request/response objects (agent-stream.ts).
    const h2 = http2.createServer({ settings: { maxConcurrentStreams: 32 } });
    h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number) => {
      serveAgentStream(stream, headers, flags, lim.requestTimeoutMs, (req, res) =>
        runRequest(() => {
          this.track(res);
          return o.agentApi.handle(req, res, stream.session?.socket as tls.TLSSocket);
        }),
      );
    });
    h2.on('session', (s) => {
      this.sessions.add(s);
      s.on('close', () => this.sessions.delete(s));
      s.on('error', (err) => o.log.debug({ err }, 'HTTP/2 session error'));
      idleSessionGuard(s, lim.idleTimeoutMs);
    });

    this.tlsServer = tls.createServer({
      key: o.key,
      cert: o.cert,
      ca: o.ca,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      ciphers: [...TLS13_CIPHERS, ...TLS12_CIPHERS].join(':'),
      honorCipherOrder: true,
      ecdhCurve: 'X25519:prime256v1:secp384r1',
      handshakeTimeout: lim.handshakeTimeoutMs,
      // Node derives the default from process.argv: a restart with any other flag (another
      // --admin-listen port, a new --listen) or a replica started differently refused every agent's
      // session, client certificate and all (OpenSSL checks the context when it verifies peers).
      sessionIdContext: 'tether-control-plane',
      ticketKeys: o.ticketKeys ?? loadOrCreateTicketKeys(o.ticketKeyFile, o.now?.() ?? Date.now()),
      // A certificate the operator brings is served to clients asking for one of its names;
      // everyone else (agents, by IP or another name) keeps the Tether CA's (setPublicCertificate).
      SNICallback: (servername, cb) => cb(null, this.publicCert?.serves(servername) ? this.publicCert.context : undefined),
      // HTTP/2 only for clients that cannot speak HTTP/1.1 (ours); see the header comment.
      ALPNCallback: ({ protocols }) => (protocols.includes('http/1.1') ? 'http/1.1' : protocols.includes('h2') ? 'h2' : undefined),
    });
    // Counted from the TCP accept (listeners run in order: the TLS server's own comes first).
    this.tlsServer.on('connection', (raw: net.Socket) => void this.guard.accept(raw));
    this.tlsServer.on('secureConnection', (socket: tls.TLSSocket) => {
      // The admin address serves HTTP/1.1 only: agents (h2) are not let in to fill its queue.
      if (socket.alpnProtocol === 'h2' && this.adminRaw.has((socket as unknown as { _parent: net.Socket })._parent)) return void socket.destroy();
      if (!this.guard.secured(socket)) {
        o.log.warn({ peer: socket.remoteAddress, limit: lim.unauthenticatedPerAddress }, 'connection refused: too many unauthenticated connections from this address');
        if (socket.alpnProtocol === 'h2') return void socket.destroy();
        socket.end(jsonAnswer(503, 'Service Unavailable', 'too_many_connections', `more than ${lim.unauthenticatedPerAddress} unauthenticated connections from this address; authenticate or close some`, { 'retry-after': '5' }));
        socket.setTimeout(1000, () => socket.destroy());
        return;
      }
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      (socket.alpnProtocol === 'h2' ? h2 : h1).emit('connection', socket);
    });
    // Node does not close a socket whose handshake failed (or timed out) when this event has a listener.
    this.tlsServer.on('tlsClientError', (err, socket) => {
      o.log.debug({ err: { code: (err as NodeJS.ErrnoException).code, message: err.message }, peer: socket.remoteAddress }, 'TLS handshake failed');
      socket.destroy();
    });
    this.rotation = setInterval(() => {
      if (o.ticketKeys) return; // rotated by their owner
      try {
        const keys = randomBytes(48);
        writeFileAtomic(o.ticketKeyFile, keys, 0o600);
        this.tlsServer.setTicketKeys(keys);
      } catch (err) {
        o.log.error({ err }, 'cannot rotate the TLS session-ticket keys; keeping the current ones');
      }
    }, TICKET_KEY_ROTATE_MS);
    this.rotation.unref();
  }

  /** New session-ticket keys (48 bytes): tickets made with the previous ones need a full handshake. */
  setTicketKeys(keys: Buffer): void {
    this.tlsServer.setTicketKeys(keys);
  }

  /**
   * The certificate served to clients whose SNI it covers (undefined: none). Applies to new
   * handshakes only: open connections, such as agents' held HTTP/2 connections, keep theirs.
   */
  setPublicCertificate(cert: { context: tls.SecureContext; serves(servername: string): boolean } | undefined): void {
    this.publicCert = cert;
  }

  /** Open TLS connections, how many of them speak HTTP/2, and how many are unauthenticated (handshakes included). */
  get connections(): { tls: number; http2: number; unauthenticated: number } {
    return { tls: this.sockets.size, http2: this.sessions.size, unauthenticated: this.guard.unauthenticated };
  }

  private track(res: { on(event: 'close', fn: () => void): unknown }) {
    this.inFlight++;
    // on, not once, here and for the sessions', sockets' and streams' 'close' below: it comes once,
    // and once() wraps each listener in a closure, a context and a property array of its own, which
    // every held agent kept (docs/performance.md, "what each held agent keeps in the V8 heap").
    res.on('close', this.untrack);
  }

  /** One function for every request's 'close', not a closure per request. */
  private readonly untrack = (): void => {
    if (--this.inFlight === 0) for (const f of this.idle.splice(0)) f();
  };

  async listen(port: number, host: string): Promise<number> {
    await new Promise<void>((res, rej) => {
      this.tlsServer.once('error', rej);
      // A restart has every agent reconnecting at once: a deep accept queue keeps their SYNs.
      this.tlsServer.listen({ port, host, backlog: 8192 }, () => res());
    });
    // The agents come back now (after a restart, at the drain's rate): V8 may grow the heap for them.
    this.endReturnHeap = relaxHeapGrowthWhileAgentsReturn();
    return (this.tlsServer.address() as AddressInfo).port;
  }

  /**
   * A second address for the admin API and the CLI (`--admin-listen`): the same TLS server, limits
   * and routes over HTTP/1.1, on a listening socket of its own. A server that falls behind accepts
   * one connection per pass over its ready sockets, per listening socket (libuv accepts once each
   * time epoll reports it), so with the agents' queue full the operator's connect waited behind
   * thousands of agents' (docs/performance.md, "The 20,000-agent ramp that locks out its
   * operator"); here it waits behind other operators only. Agents (HTTP/2) are refused on it.
   */
  async listenAdmin(port: number, host: string): Promise<number> {
    const admin = net.createServer((raw) => {
      this.adminRaw.add(raw);
      this.tlsServer.emit('connection', raw);
    });
    await new Promise<void>((res, rej) => {
      admin.once('error', rej);
      admin.listen({ port, host }, () => res());
    });
    this.adminServer = admin;
    return (admin.address() as AddressInfo).port;
  }

  /**
   * Stops accepting, lets requests in flight finish (held polls must have been answered by the
   * caller first) for up to `graceMs`, then closes every connection. The grace is short: what is
   * cut (an answer still in a socket buffer) is retried by its agent, and a restart under
   * thousands of agents should not wait for the slowest of them to read.
   */
  async close(graceMs = 1000): Promise<void> {
    this.closing = true;
    clearInterval(this.rotation);
    this.endReturnHeap?.();
    this.adminServer?.close(); // stops listening; its connections are closed below with the rest
    const closed = new Promise<void>((res) => this.tlsServer.close(() => res()));
    for (const s of this.sessions) s.close(); // GOAWAY: no new streams, open ones finish
    if (this.inFlight > 0) {
      await new Promise<void>((res) => {
        const t = setTimeout(res, graceMs);
        this.idle.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
    for (const s of this.sockets) s.destroy();
    this.h1.close(); // stops its timeout checks
    await closed;
  }
}

/** A complete HTTP/1.1 answer with a JSON error body, the connection closed after it. */
export function jsonAnswer(status: number, reason: string, code: string, message: string, headers: Record<string, string> = {}): string {
  const body = JSON.stringify({ error: { code, message } });
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`;
}

/** What Node's HTTP/1.1 parser refused, answered as JSON; undefined: the peer is gone, just close. */
function clientErrorAnswer(code: string | undefined, lim: TransportLimits): string | undefined {
  switch (code) {
    case 'ECONNRESET':
    case 'EPIPE':
      return undefined;
    case 'HPE_HEADER_OVERFLOW':
      return jsonAnswer(431, 'Request Header Fields Too Large', 'headers_too_large', `the request headers are larger than ${http.maxHeaderSize} bytes`);
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return jsonAnswer(408, 'Request Timeout', 'request_timeout', `the request did not arrive in time (headers within ${lim.headersTimeoutMs} ms, the whole request within ${lim.requestTimeoutMs} ms)`);
    default:
      return jsonAnswer(400, 'Bad Request', 'invalid_http', 'the request is not valid HTTP/1.1');
  }
}

/**
 * HTTP/2: a session with no open stream for `ms` is closed (GOAWAY). An agent always has its
 * long-poll open, so only sessions that stopped asking for anything are closed.
 */
function idleSessionGuard(s: http2.ServerHttp2Session, ms: number): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    timer = setTimeout(() => {
      if (open === 0 && !s.closed && !s.destroyed) s.close();
    }, ms);
    timer.unref();
  };
  const closed = () => {
    if (--open === 0 && !s.closed) arm();
  };
  s.on('stream', (stream: http2.ServerHttp2Stream) => {
    open++;
    // Dropped, not only cleared: a held session would keep its spent Timeout otherwise.
    clearTimeout(timer);
    timer = undefined;
    stream.on('close', closed);
  });
  s.on('close', () => clearTimeout(timer));
  arm();
}

/**
 * The 48 bytes of session-ticket keys, kept (0600) in the data folder so that tickets issued before
 * a restart still resume after it; replaced when older than a day.
 */
export function loadOrCreateTicketKeys(file: string, now: number): Buffer {
  try {
    const st = statSync(file);
    const keys = readFileSync(file);
    if (keys.length === 48 && now - st.mtimeMs < TICKET_KEY_MAX_AGE_MS) return keys;
  } catch {
    /* absent: create */
  }
  const keys = randomBytes(48);
  writeFileAtomic(file, keys, 0o600);
  return keys;
}
