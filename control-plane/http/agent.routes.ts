/**
 * The agent API (mutual TLS): long-poll, heartbeat, results, logs, renewal and the node agents'
 * VPN routes. This is every agent's hot path (a heartbeat per agent every 5 s, a held poll per
 * idle agent), so it is served by this small router rather than Express: no middleware chain,
 * no request/response decoration, and the same handler serves HTTP/1.1 (from the Express-side
 * server) and HTTP/2 streams (agents multiplex their poll and heartbeats over one connection;
 * Express cannot serve HTTP/2). Bootstrap (one-way TLS) stays in Express.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { resolve } from 'node:path';
import { Router } from 'express';
import { bootstrapRequestSchema, logsRequestSchema, renewRequestSchema, resultRequestSchema, type HeartbeatResponse } from '../../common/wire.ts';
import { TetherError, errorBody, forbidden } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import type { IdentityService } from '../identity/identity.service.ts';
import { RetryLater, type AgentPrincipal, type QueueService } from '../queue/queue.service.ts';
import { HoldSignal } from '../queue/dispatcher.ts';
import type { VpnService } from '../vpn/vpn.service.ts';
import { vpnRegisterSchema } from '../vpn/vpn.schemas.ts';
import type { Config } from '../config.ts';
import type { Durability } from '../db/durability.ts';
import { authenticateAgent } from './auth.ts';
import { parseHeartbeat } from './heartbeat-body.ts';
import { secondsQuery } from './seconds-query.ts';
import { describeError, idParam, logRefusal } from './errors.ts';
import type { FailureLimits } from './rate-limit.ts';
import { AgentRateLimited, type AgentRateLimiter, type AgentRouteClass } from './agent-rate.ts';
import { reportAndPoll, resultNextSeconds, type ResultNextDeps } from './result-next.ts';

export function bootstrapRoutes(deps: { identity: IdentityService; limiter: FailureLimits }): Router {
  const r = Router();
  r.post('/bootstrap', async (req, res) => {
    const who = req.socket.remoteAddress ?? 'unknown';
    await deps.limiter.check(who);
    try {
      res.status(201).json(await deps.identity.bootstrap(bootstrapRequestSchema.parse(req.body)));
    } catch (err) {
      // Every refusal counts, a bad CSR as much as a bad token: a holder of one valid token must
      // not get unlimited tries at the CSR checks (they cost parsing and, past them, a signature check).
      if (!(err instanceof TetherError && err.code === 'rate_limited')) await deps.limiter.fail(who);
      throw err;
    }
  });
  return r;
}

export type ApiRequest = IncomingMessage | Http2ServerRequest;
export type ApiResponse = ServerResponse | Http2ServerResponse;

interface Call {
  agent: AgentPrincipal;
  /** Captures of the route's pattern. */
  params: string[];
  /** The query string, without '?' (parsed only by the route that has one). */
  search: string;
  body: unknown;
  /** Aborted when the client goes away (only for routes that hold the request; HoldSignal.never otherwise). */
  signal: HoldSignal;
}

interface Route {
  method: string;
  path: RegExp;
  role?: AgentPrincipal['role'];
  status?: number;
  /** The handler may hold the request (long-poll): give it a signal for the client leaving. A function: per query string. */
  holds?: boolean | ((search: string) => boolean);
  /** The handler waits for the durability barrier itself (a claim: queue.poll; a heartbeat: queue.heartbeat), so the answer does not wait again. A function: per query string. */
  durable?: boolean | ((search: string) => boolean);
  /** The agent's request-rate class (agent-rate.ts); others are 'other'. */
  rate?: AgentRouteClass;
  /** A second class the request also counts against, per query string (a result with `next` is a poll too). */
  alsoRate?: (search: string) => AgentRouteClass | undefined;
  run(c: Call): Promise<unknown> | unknown;
}

const AGENT_API_PREFIX = '/v1/agent/';
/** The poll's `wait` (seconds), or undefined when the query has none (seconds-query.ts). */
const waitQuery = secondsQuery('wait');
export const pollQuery = waitQuery.schema;
export const pollWaitSeconds = waitQuery.read;
/** Whether a result's query asks for the next command (`next=`; a bad value is refused by resultNextSeconds before anything runs). */
const hasNext = (search: string): boolean => search !== '' && resultNextSeconds(search) !== undefined;
/** The heartbeat's usual answer, serialised once (send() writes a Buffer as it is). */
const NOTHING_TO_CANCEL = Buffer.from(JSON.stringify({ cancel: [] } satisfies HeartbeatResponse));

/** An agent's open connection, and its HTTP/2 session when it speaks HTTP/2. */
interface AgentConnection {
  socket: TLSSocket;
  session: Http2ServerRequest['stream']['session'] | undefined;
}

/** How long a revoked agent's connections get to take their refusals before they are cut. */
const REVOKED_CLOSE_GRACE_MS = 2000;

export class AgentApi {
  private readonly routes: Route[];
  /** Each agent's open connections (added on its first authenticated request on one), for revocation. */
  private readonly connections = new Map<string, Map<TLSSocket, AgentConnection>>();
  private readonly d: { identity: IdentityService; queue: QueueService; vpn: VpnService; config: Config; log: Logger; durability: Durability; rate?: AgentRateLimiter | undefined };

  /** Paths error messages must not show (the data folder). */
  private readonly hide: string[];
  private readonly resultNext: ResultNextDeps;

  constructor(deps: { identity: IdentityService; queue: QueueService; vpn: VpnService; config: Config; log: Logger; durability: Durability; rate?: AgentRateLimiter | undefined }) {
    this.d = deps;
    this.hide = [resolve(deps.config.dataDir)];
    this.resultNext = { queue: deps.queue, durability: deps.durability, log: deps.log, longPollSeconds: deps.config.longPollSeconds };
    const { queue, vpn, identity, config } = deps;
    this.routes = [
      { method: 'GET', path: /^\/v1\/agent\/whoami$/, run: (c) => c.agent },
      {
        method: 'GET',
        path: /^\/v1\/agent\/poll$/,
        holds: true,
        durable: true,
        rate: 'poll',
        run: (c) => {
          const wait = pollWaitSeconds(c.search);
          const waitMs = Math.min(wait ?? config.longPollSeconds, config.longPollSeconds) * 1000;
          return queue.poll(c.agent, waitMs, c.signal);
        },
      },
      // Not behind the durability barrier as a whole: queue.heartbeat waits only for what it must.
      {
        method: 'POST',
        path: /^\/v1\/agent\/heartbeat$/,
        durable: true,
        rate: 'heartbeat',
        // The body's common shape is checked without zod (heartbeat-body.ts); the usual answer
        // (nothing to cancel) is one buffer, not an object serialised per heartbeat.
        run: async (c) => {
          const out = await queue.heartbeat(c.agent, parseHeartbeat(c.body));
          return out.cancel.length === 0 ? NOTHING_TO_CANCEL : out;
        },
      },
      // With `?next=N` the result also claims the next command (result-next.ts): held like a poll,
      // counted as a poll too, and it waits for the barrier itself; without, as it always was.
      {
        method: 'POST',
        path: /^\/v1\/agent\/commands\/([^/]+)\/result$/,
        rate: 'result',
        alsoRate: (search) => (resultNextSeconds(search) === undefined ? undefined : 'poll'),
        holds: hasNext,
        durable: hasNext,
        run: (c) => {
          const next = resultNextSeconds(c.search);
          const id = idParam(c.params[0]);
          const result = resultRequestSchema.parse(c.body);
          if (next === undefined) return queue.report(c.agent, id, result);
          return reportAndPoll(this.resultNext, c.agent, id, result, next, c.signal);
        },
      },
      {
        method: 'POST',
        path: /^\/v1\/agent\/commands\/([^/]+)\/logs$/,
        rate: 'logs',
        run: async (c) => {
          const body = logsRequestSchema.parse(c.body);
          return { stored: await queue.appendLogs(c.agent, idParam(c.params[0]), body.leaseId, body.lines) };
        },
      },
      { method: 'POST', path: /^\/v1\/agent\/certificate$/, status: 201, run: (c) => identity.renew(c.agent, renewRequestSchema.parse(c.body).csr) },
      { method: 'PUT', path: /^\/v1\/agent\/vpn\/node$/, role: 'node', run: (c) => vpn.registerNode(c.agent, vpnRegisterSchema.parse(c.body)) },
      { method: 'GET', path: /^\/v1\/agent\/vpn\/config$/, role: 'node', run: (c) => vpn.configFor(c.agent) },
    ];
  }

  /**
   * The agent was revoked: every connection it has is closed after a short grace. From the
   * revocation on, each of its requests is refused by authentication (403) and its held polls were
   * answered 403 by the dispatcher; the grace lets those answers reach it (a GOAWAY at once would
   * have its requests already on the way reset as refused streams instead of answered).
   */
  disconnect(agentId: string): void {
    const conns = this.connections.get(agentId);
    if (!conns) return;
    this.connections.delete(agentId);
    for (const c of conns.values()) {
      setTimeout(() => {
        if (c.session && !c.session.destroyed) c.session.destroy();
        c.socket.destroy();
      }, REVOKED_CLOSE_GRACE_MS).unref();
    }
    this.d.log.info({ agentId, connections: conns.size }, 'revoked agent disconnected');
  }

  private remember(agentId: string, socket: TLSSocket, req: ApiRequest): void {
    let conns = this.connections.get(agentId);
    if (conns?.has(socket)) return;
    if (!conns) this.connections.set(agentId, (conns = new Map()));
    conns.set(socket, { socket, session: 'stream' in req ? req.stream.session : undefined });
    socket.on('close', () => {
      const now = this.connections.get(agentId);
      now?.delete(socket);
      if (now?.size === 0) this.connections.delete(agentId);
    });
  }

  static handles(url: string | undefined): boolean {
    return url !== undefined && url.startsWith(AGENT_API_PREFIX);
  }

  /**
   * Serves one request; never throws (every failure becomes a JSON error response, or nothing when
   * the client is gone). Its callers do not wait for it (`void handle(…)`): a throw here would be an
   * unhandled rejection, on which `tether server` exits.
   */
  async handle(req: ApiRequest, res: ApiResponse, socket: TLSSocket): Promise<void> {
    // Read while the connection is surely there: an HTTP/2 session's socket is a proxy that throws
    // ERR_HTTP2_SOCKET_UNBOUND on every access once the session lost it (the client left while
    // its request waited), and the error path below needs the address after any wait.
    const peer = peerAddress(socket);
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const method = req.method ?? 'GET';
    try {
      let params: string[] | undefined;
      const route = this.routes.find((r) => {
        if (r.method !== method) return false;
        const m = r.path.exec(path);
        if (m) params = m.slice(1);
        return m !== null;
      });
      if (!route) {
        const allow = this.routes.filter((r) => r.path.test(path)).map((r) => r.method);
        if (allow.length > 0) throw new MethodNotAllowed(method, path, allow);
        const hint = req.httpVersionMajor === 2 && !AgentApi.handles(path) ? ' over HTTP/2: it serves the agent API (/v1/agent/…); use HTTP/1.1' : '';
        throw new TetherError('route_not_found', `no route ${method} ${path}${hint}`, { status: 404 });
      }
      // Authenticate before reading a body: an unknown peer never gets its upload buffered.
      const agent = await authenticateAgent(this.d.identity, socket);
      this.remember(agent.agentId, socket, req);
      if (route.role && agent.role !== route.role) throw forbidden(`this route is for ${route.role} agents only`, 'wrong_role');
      // Each agent's request rate per route class, before its body is read (agent-rate.ts).
      const search = q < 0 ? '' : url.slice(q + 1);
      this.d.rate?.take(agent.agentId, route.rate ?? 'other', route.alsoRate?.(search));
      const body = method === 'GET' ? undefined : await readJsonBody(req, this.d.config.bodyLimitBytes);
      let signal = HoldSignal.never;
      let answered = false;
      if (route.holds === true || (route.holds && route.holds(search))) {
        // 'close' before we answered = the client left (HTTP/2 responses report writableFinished
        // on a reset stream too, so our own flag decides).
        const hold = new HoldSignal();
        res.on('close', () => {
          if (!answered) hold.abort();
        });
        signal = hold;
      }
      const out = await route.run({ agent, params: params!, search, body, signal });
      // Answered only once what it acknowledges (a result, logs) is on disk; a claim waited in
      // queue.poll (where a claim whose agent left meanwhile is given back), a heartbeat in
      // queue.heartbeat (for its lease extensions only: db/durability.ts).
      const durable = route.durable === true || (route.durable && route.durable(search)) ? undefined : this.d.durability.barrier();
      if (durable) await durable;
      if (signal.aborted) return;
      answered = true;
      send(res, route.status ?? 200, out);
    } catch (err) {
      // One async function, not a wrapper awaiting this one (as it was): each held poll kept both suspended.
      try {
        this.answerError(req, res, err, method, path, peer);
      } catch (bug) {
        // Only a bug in the error path itself comes here: logged, the request ended, the server serving.
        this.d.log.error({ err: bug, method, route: path }, 'agent request failed while answering an error');
        if (!res.destroyed) res.end();
      }
    }
  }

  /** The error path: a JSON error answer, or nothing when the client is gone. */
  private answerError(req: ApiRequest, res: ApiResponse, err: unknown, method: string, path: string, peer: string | null): void {
    // The client's connection is gone (it left while this request waited): nobody to answer.
    if ((err as { code?: unknown }).code === 'ERR_HTTP2_SOCKET_UNBOUND' || res.destroyed) {
      this.d.log.debug({ method, route: path, code: (err as { code?: unknown }).code, peer }, 'request ended: the client is gone');
      return;
    }
    const d = describeError(err, this.hide);
    // A flooding agent's refusals are logged once per burst, not once each. A drain answers every
    // held poll 503 with when to come back: expected, counted once in the stop's log line, not an
    // error (with its stack) per agent while thousands are answered.
    if (err instanceof RetryLater) this.d.log.debug({ method, route: path, code: d.code, retryAfterSeconds: err.retryAfterSeconds }, 'request answered: retry later');
    else if (!(err instanceof AgentRateLimited && !err.first)) logRefusal(this.d.log, err, d, { method, route: path, peer });
    if (res.headersSent) return void res.end();
    // An unread upload is not drained: HTTP/1.1 closes the connection after the answer.
    if ((d.status === 413 || !req.complete) && 'shouldKeepAlive' in res) res.shouldKeepAlive = false;
    // 503 (draining, storage): try again shortly — an agent with several replicas moves to the next.
    const extra: Record<string, string> =
      err instanceof MethodNotAllowed
        ? { allow: err.allow.join(', ') }
        : err instanceof AgentRateLimited
          ? { 'retry-after': String(err.retryAfterSeconds) }
          : d.status === 503
            ? { 'retry-after': String(err instanceof RetryLater ? err.retryAfterSeconds : 1) }
            : {};
    send(res, d.status, errorBody(d.code, d.message), extra);
  }
}

/** The peer's address, or null when the socket cannot tell (an HTTP/2 session's socket already detached). */
function peerAddress(socket: TLSSocket): string | null {
  try {
    return socket.remoteAddress ?? null;
  } catch {
    return null;
  }
}

/** 405: the path is served, with other methods (listed in `Allow`). */
class MethodNotAllowed extends TetherError {
  readonly allow: string[];
  constructor(method: string, path: string, allow: string[]) {
    super('method_not_allowed', `${method} is not allowed on ${path}; allowed: ${allow.join(', ')}`, { status: 405 });
    this.allow = allow;
  }
}

function send(res: ApiResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed) return;
  // A Buffer is an answer already serialised (shared between requests: written, never changed).
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body ?? null));
  res.sendDate = false; // agents have no use for it, and on HTTP/2 it is the one header HPACK cannot index away
  // Both response kinds take (status, headers); their overloads just don't unify in TypeScript.
  (res as ServerResponse).writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': buf.length });
  res.end(buf);
}

/** Reads a JSON request body of at most `limit` bytes; an empty body is `undefined`. */
async function readJsonBody(req: ApiRequest, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (declared > limit) throw new TetherError('payload_too_large', `the request body is larger than ${limit} bytes`, { status: 413 });
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding !== 'identity') {
    throw new TetherError('unsupported_encoding', `content-encoding ${encoding} is not accepted by the agent API; send the body uncompressed`, { status: 415 });
  }
  const raw = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size <= limit) return void chunks.push(c);
      // Stop reading: the refusal is sent and the connection closed rather than the rest drained.
      done();
      req.pause();
      reject(new TetherError('payload_too_large', `the request body is larger than ${limit} bytes`, { status: 413 }));
    };
    const onEnd = () => {
      done();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      done();
      reject(new TetherError('invalid_body', `the request body cannot be read: ${err.message}`, { status: 400 }));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
  if (raw.length === 0) return undefined;
  const type = String(req.headers['content-type'] ?? '');
  if (!/^application\/([a-z.+-]*\+)?json\s*(;|$)/i.test(type)) {
    throw new TetherError('unsupported_media_type', `the request body must be application/json (got ${type || 'no content-type'})`, { status: 415 });
  }
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new TetherError('invalid_json', `the request body is not valid JSON: ${(err as Error).message}`, { status: 400 });
  }
}
