/**
 * The agent API on HTTP/2 streams without Node's compatibility layer. `http2.createServer(fn)`
 * wraps every stream in an Http2ServerRequest (a second Readable fed from the stream) and an
 * Http2ServerResponse (a Stream with header bookkeeping): two objects, their listeners and a
 * copy of the body's flow per request, on the path every agent takes every 5 s. Here each
 * stream gets two small adapters with exactly what AgentApi.handle uses (the same handler serves
 * HTTP/1.1), so authentication, bounds, errors and answers stay those of agent.routes.ts.
 */
import http2 from 'node:http2';
import type { IncomingHttpHeaders } from 'node:http2';
import type { ApiRequest, ApiResponse } from './agent.routes.ts';

const { NGHTTP2_FLAG_END_STREAM, NGHTTP2_NO_ERROR, NGHTTP2_CANCEL } = http2.constants;

/** What AgentApi.handle reads of a request: headers, the body as 'data'/'end' events, the session. */
export class StreamRequest {
  readonly stream: http2.ServerHttp2Stream;
  readonly headers: IncomingHttpHeaders;
  readonly url: string;
  readonly method: string;
  readonly httpVersionMajor = 2;
  private ended: boolean;

  constructor(stream: http2.ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number) {
    this.stream = stream;
    // Only the headers the handler reads (a body's: readJsonBody). The whole header object is a
    // dictionary of ~450 B, and a held poll kept it for as long as it was held.
    this.headers = { 'content-length': headers['content-length'], 'content-type': headers['content-type'], 'content-encoding': headers['content-encoding'] };
    this.url = headers[':path'] ?? '/';
    this.method = headers[':method'] ?? 'GET';
    // A request whose headers end the stream has no body (and no 'end' unless someone reads).
    this.ended = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
    if (!this.ended) {
      stream.once('end', () => (this.ended = true));
    }
  }

  /** The whole request arrived (or the stream is gone). */
  get complete(): boolean {
    return this.ended || this.stream.destroyed || this.stream.closed;
  }

  on(event: string, fn: (...a: never[]) => void): this {
    this.stream.on(event, fn as (...a: unknown[]) => void);
    return this;
  }

  once(event: string, fn: (...a: never[]) => void): this {
    this.stream.once(event, fn as (...a: unknown[]) => void);
    return this;
  }

  off(event: string, fn: (...a: never[]) => void): this {
    this.stream.off(event, fn as (...a: unknown[]) => void);
    return this;
  }

  pause(): this {
    this.stream.pause();
    return this;
  }
}

/** What AgentApi.handle writes: a status with headers, then one body. */
export class StreamResponse {
  private readonly stream: http2.ServerHttp2Stream;
  private readonly req: StreamRequest;
  private readonly head: boolean;
  /** send() in agent.routes.ts turns it off: agents have no use for a Date header. */
  sendDate = false;

  constructor(stream: http2.ServerHttp2Stream, req: StreamRequest) {
    this.stream = stream;
    this.req = req;
    this.head = req.method === 'HEAD';
  }

  /** `sendDate` is a documented option of respond() that @types/node does not list. */
  private options(): http2.ServerStreamResponseOptions {
    return { endStream: this.head, sendDate: this.sendDate } as http2.ServerStreamResponseOptions;
  }

  get headersSent(): boolean {
    return this.stream.headersSent;
  }

  get destroyed(): boolean {
    return this.stream.destroyed || this.stream.closed;
  }

  once(event: 'close', fn: () => void): this {
    this.stream.once(event, fn);
    return this;
  }

  /** For 'close', which a stream emits once: on() spares the wrapper once() makes per listener. */
  on(event: 'close', fn: () => void): this {
    this.stream.on(event, fn);
    return this;
  }

  writeHead(status: number, headers: Record<string, string | number>): this {
    if (!this.destroyed) this.stream.respond({ ...headers, ':status': status }, this.options());
    return this;
  }

  end(body?: Buffer): void {
    const s = this.stream;
    if (s.destroyed || s.closed) return;
    if (!s.headersSent) s.respond({ ':status': 200 }, this.options());
    if (this.head || s.writableEnded) return;
    // The whole request arrived (every heartbeat, poll and result): the body and END_STREAM go
    // together, in the session's next flush. Ending the stream only once the body's write was
    // reported done (as this did before, to spare Node the ERR_STREAM_DESTROYED it builds when the
    // write of a stream already closed completes: ~11 µs per heartbeat) held every answer for a
    // second flush, which Node schedules with setImmediate: it runs once every socket ready in the
    // loop's turn has been served, so under a backlog every answer waited for the whole backlog
    // (docs/performance.md, "the answers held until a backlog ended").
    if (this.req.complete) return void s.end(body);
    s.end(body, () => {
      // Answered before the upload ended (a refusal, a body too large): tell the client to stop
      // sending (RST_STREAM NO_ERROR after a complete response, RFC 9113 §8.1) rather than drain it.
      if (!this.req.complete && !s.closed && !s.destroyed) s.close(NGHTTP2_NO_ERROR);
    });
  }
}

/** One listener for every stream's errors, not a closure per stream. */
const ignore = (): void => undefined;

/**
 * Serves one agent stream: `handle` with the adapters. A stream error (a reset by the client)
 * only ends that stream; an upload not ended within `stallMs` of its start is cancelled.
 */
export function serveAgentStream(
  stream: http2.ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  flags: number,
  stallMs: number,
  handle: (req: ApiRequest, res: ApiResponse) => Promise<void>,
): StreamResponse {
  stream.on('error', ignore);
  const req = new StreamRequest(stream, headers, flags);
  const res = new StreamResponse(stream, req);
  if (!req.complete) {
    const t = setTimeout(() => {
      if (!req.complete) stream.close(NGHTTP2_CANCEL);
    }, stallMs);
    t.unref();
    stream.once('close', () => clearTimeout(t));
    stream.once('end', () => clearTimeout(t));
  }
  void handle(req as unknown as ApiRequest, res as unknown as ApiResponse);
  return res;
}
