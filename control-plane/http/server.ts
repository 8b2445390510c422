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
 */
import http from 'node:http';
import http2 from 'node:http2';
import tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { RequestListener } from 'node:http';
import { writeFileAtomic } from '../../common/files.ts';
import type { Logger } from '../../common/logger.ts';
import { AgentApi } from './agent.routes.ts';

export interface ApiServerOptions {
  key: string;
  cert: string;
  ca: string[];
  /** Express (HTTP/1.1, every route). */
  app: RequestListener;
  agentApi: AgentApi;
  ticketKeyFile: string;
  log: Logger;
  now?: () => number;
}

/**
 * Session-ticket keys are replaced every 12 h while running (tickets made with older keys then
 * need a full handshake) and at start when the kept ones are older than a day.
 */
const TICKET_KEY_ROTATE_MS = 12 * 3600 * 1000;
const TICKET_KEY_MAX_AGE_MS = 24 * 3600 * 1000;

export class ApiServer {
  private readonly tlsServer: tls.Server;
  private readonly sockets = new Set<tls.TLSSocket>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private inFlight = 0;
  private readonly idle: (() => void)[] = [];
  private readonly rotation: NodeJS.Timeout;
  private closing = false;
  private publicCert: { context: tls.SecureContext; serves(servername: string): boolean } | undefined;

  constructor(o: ApiServerOptions) {
    const h1 = http.createServer({ keepAliveTimeout: 75_000, requestTimeout: 0, headersTimeout: 80_000 }, (req, res) => {
      this.track(res);
      if (this.closing) res.shouldKeepAlive = false; // answered, then the connection closes
      if (AgentApi.handles(req.url)) void o.agentApi.handle(req, res, req.socket as tls.TLSSocket);
      else o.app(req, res);
    });
    h1.on('clientError', (err, socket) => {
      o.log.debug({ err }, 'client error');
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    });
    // Everything on HTTP/2 goes to the agent API, which answers any other path 404.
    const h2 = http2.createServer({ settings: { maxConcurrentStreams: 32 } }, (req, res) => {
      this.track(res);
      void o.agentApi.handle(req, res, req.stream.session?.socket as tls.TLSSocket);
    });
    h2.on('session', (s) => {
      this.sessions.add(s);
      s.once('close', () => this.sessions.delete(s));
      s.on('error', (err) => o.log.debug({ err }, 'HTTP/2 session error'));
    });

    this.tlsServer = tls.createServer({
      key: o.key,
      cert: o.cert,
      ca: o.ca,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      ticketKeys: loadOrCreateTicketKeys(o.ticketKeyFile, o.now?.() ?? Date.now()),
      // A certificate the operator brings is served to clients asking for one of its names;
      // everyone else (agents, by IP or another name) keeps the Tether CA's (setPublicCertificate).
      SNICallback: (servername, cb) => cb(null, this.publicCert?.serves(servername) ? this.publicCert.context : undefined),
      // HTTP/2 only for clients that cannot speak HTTP/1.1 (ours); see the header comment.
      ALPNCallback: ({ protocols }) => (protocols.includes('http/1.1') ? 'http/1.1' : protocols.includes('h2') ? 'h2' : undefined),
    });
    this.tlsServer.on('secureConnection', (socket: tls.TLSSocket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      (socket.alpnProtocol === 'h2' ? h2 : h1).emit('connection', socket);
    });
    this.tlsServer.on('tlsClientError', (err) => o.log.debug({ err }, 'TLS handshake failed'));
    this.rotation = setInterval(() => {
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

  /**
   * The certificate served to clients whose SNI it covers (undefined: none). Applies to new
   * handshakes only: open connections, such as agents' held HTTP/2 connections, keep theirs.
   */
  setPublicCertificate(cert: { context: tls.SecureContext; serves(servername: string): boolean } | undefined): void {
    this.publicCert = cert;
  }

  /** Open TLS connections, and how many of them speak HTTP/2. */
  get connections(): { tls: number; http2: number } {
    return { tls: this.sockets.size, http2: this.sessions.size };
  }

  private track(res: http.ServerResponse | http2.Http2ServerResponse) {
    this.inFlight++;
    res.once('close', () => {
      if (--this.inFlight === 0) for (const f of this.idle.splice(0)) f();
    });
  }

  async listen(port: number, host: string): Promise<number> {
    await new Promise<void>((res, rej) => {
      this.tlsServer.once('error', rej);
      // A restart has every agent reconnecting at once: a deep accept queue keeps their SYNs.
      this.tlsServer.listen({ port, host, backlog: 8192 }, () => res());
    });
    return (this.tlsServer.address() as AddressInfo).port;
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
    await closed;
  }
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
