/**
 * The agent API on raw HTTP/2 streams (control-plane/http/agent-stream.ts) answers as it did
 * through Node's compatibility layer, on a real control plane over mTLS: JSON answers without a
 * Date header, HEAD without a body, a refused upload cut short while its session lives on, a 404
 * for a path outside the agent API, and a client resetting its held poll without harm.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { serveAgentStream, type StreamResponse } from '../../control-plane/http/agent-stream.ts';
import { removeDir, startTestControlPlane, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';

interface H2Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
  rstCode: number | undefined;
}

function call(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer | string, o: { endAfterBody?: boolean } = {}): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const s = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let got: http2.IncomingHttpHeaders = {};
    let out = '';
    s.on('response', (h) => {
      got = h;
      status = Number(h[':status']);
    });
    s.on('data', (c: Buffer) => (out += c.toString()));
    s.on('error', () => undefined);
    s.on('close', () => (status ? resolve({ status, headers: got, body: out, rstCode: s.rstCode }) : reject(new Error(`stream closed without an answer (rst ${s.rstCode})`))));
    if (body !== undefined) {
      s.write(body);
      if (o.endAfterBody !== false) s.end();
    }
  });
}

describe('agent API on raw HTTP/2 streams', function () {
  this.timeout(30_000);
  let t: TestControlPlane;
  let agent: TestAgent;
  let session: http2.ClientHttp2Session;

  before(async () => {
    t = await startTestControlPlane({ bodyLimitBytes: 4096, longPollSeconds: 3 });
    await t.createCluster('hs1');
    agent = await t.agent('hs1', 'cluster-agent');
    session = http2.connect(t.url, { ca: t.caPem, servername: 'localhost', cert: agent.identity.certificate, key: agent.keys.privateKeyPem });
    await new Promise((r) => session.once('connect', r));
  });
  after(async () => {
    session?.destroy();
    agent?.client.close();
    await t?.close();
    if (t) removeDir(t.dataDir);
  });

  it('answers a heartbeat 200 with a JSON body and no Date header', async () => {
    const a = await call(session, { ':method': 'POST', ':path': '/v1/agent/heartbeat', 'content-type': 'application/json' }, JSON.stringify({ version: 't', metrics: {}, running: [] }));
    assert.equal(a.status, 200);
    assert.match(String(a.headers['content-type']), /^application\/json/);
    assert.equal(Number(a.headers['content-length']), Buffer.byteLength(a.body));
    assert.equal(a.headers.date, undefined);
    assert.equal(typeof JSON.parse(a.body), 'object');
  });

  it('answers whoami with the agent the certificate names', async () => {
    const a = await call(session, { ':method': 'GET', ':path': '/v1/agent/whoami' });
    assert.equal(a.status, 200);
    assert.equal(JSON.parse(a.body).agentId, agent.identity.agentId);
  });

  it('answers HEAD on an agent route 405 with Allow and no body', async () => {
    const a = await call(session, { ':method': 'HEAD', ':path': '/v1/agent/whoami' });
    assert.equal(a.status, 405);
    assert.equal(a.headers.allow, 'GET');
    assert.equal(a.body, '');
  });

  it('answers a path outside the agent API 404 route_not_found in JSON', async () => {
    const a = await call(session, { ':method': 'GET', ':path': '/v1/clusters' });
    assert.equal(a.status, 404);
    assert.equal(JSON.parse(a.body).error.code, 'route_not_found');
  });

  it('refuses a body over the limit with 413 JSON and stops the upload, keeping the session', async () => {
    // Declared over the limit: refused before reading, while the client still has the rest to send.
    const a = await call(session, { ':method': 'POST', ':path': '/v1/agent/heartbeat', 'content-type': 'application/json', 'content-length': '100000' }, '{"version":', { endAfterBody: false });
    assert.equal(a.status, 413);
    assert.equal(JSON.parse(a.body).error.code, 'payload_too_large');
    assert.equal(a.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'the rest of the upload is declined (RST_STREAM NO_ERROR after the answer)');
    // Not declared, streamed past the limit.
    const b = await call(session, { ':method': 'POST', ':path': '/v1/agent/heartbeat', 'content-type': 'application/json' }, Buffer.alloc(8192, 0x20), { endAfterBody: false });
    assert.equal(b.status, 413);
    assert.equal(JSON.parse(b.body).error.code, 'payload_too_large');
    const who = await call(session, { ':method': 'GET', ':path': '/v1/agent/whoami' });
    assert.equal(who.status, 200, 'the session is still served');
  });

  it('refuses invalid JSON with 400 invalid_json', async () => {
    const a = await call(session, { ':method': 'POST', ':path': '/v1/agent/heartbeat', 'content-type': 'application/json' }, '{"version":');
    assert.equal(a.status, 400);
    assert.equal(JSON.parse(a.body).error.code, 'invalid_json');
  });

  it('takes a held poll reset by the client without harm: the next poll is held and answered', async () => {
    const s = session.request({ ':method': 'GET', ':path': '/v1/agent/poll?wait=3' });
    s.on('error', () => undefined);
    await new Promise((r) => setTimeout(r, 300));
    s.close(http2.constants.NGHTTP2_CANCEL);
    const a = await call(session, { ':method': 'GET', ':path': '/v1/agent/poll?wait=1' });
    assert.equal(a.status, 200);
    assert.equal(JSON.parse(a.body).command, null);
  });
});

describe('agent API on raw HTTP/2 streams: the answer of a complete request', function () {
  this.timeout(30_000);

  it('ends its stream without a callback (nothing is run for its completion); a refused upload still gets one', async () => {
    // serveAgentStream on a real (cleartext) HTTP/2 server; each server stream's end() is watched:
    // did the answer pass a callback, and was that callback handed an error?
    const seen: { path: string; callback: boolean; errors: string[] }[] = [];
    const server = http2.createServer();
    server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number) => {
      const path = String(headers[':path']);
      const record = { path, callback: false, errors: [] as string[] };
      seen.push(record);
      const end = stream.end.bind(stream) as (...a: unknown[]) => http2.ServerHttp2Stream;
      (stream as { end: (...a: unknown[]) => unknown }).end = (...args: unknown[]) => {
        const i = args.findIndex((a) => typeof a === 'function');
        if (i >= 0) {
          record.callback = true;
          const cb = args[i] as (err?: Error | null) => void;
          args[i] = (err?: Error | null) => {
            if (err) record.errors.push((err as NodeJS.ErrnoException).code ?? err.message);
            cb(err);
          };
        }
        return end(...args);
      };
      // Like AgentApi.handle: a refusal answers before reading the upload; anything else reads it first.
      answerAfterBody(stream, headers, flags, path === '/refuse' ? 413 : 200, '{"ok":true}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      for (let i = 0; i < 20; i++) {
        const hb = await call(session, { ':method': 'POST', ':path': '/heartbeat', 'content-type': 'application/json' }, '{"metrics":{}}');
        assert.equal(hb.status, 200);
        const poll = await call(session, { ':method': 'GET', ':path': '/poll' });
        assert.equal(poll.status, 200);
      }
      const refused = await call(session, { ':method': 'POST', ':path': '/refuse' }, '{"partial":', { endAfterBody: false });
      assert.equal(refused.status, 413);
      assert.equal(refused.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'the refused upload is still declined after the answer');
      await new Promise((r) => setTimeout(r, 100)); // the last streams' callbacks, if any, have run
      const complete = seen.filter((x) => x.path !== '/refuse');
      assert.equal(complete.length, 40);
      assert.deepEqual(complete.filter((x) => x.callback).map((x) => x.path), [], 'answers of complete requests pass no end callback');
      assert.deepEqual(complete.flatMap((x) => x.errors), []);
      assert.equal(seen.find((x) => x.path === '/refuse')?.callback, true, 'the refusal keeps its callback (it declines the rest of the upload)');
    } finally {
      session.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  it('sends the answer of a complete request with END_STREAM on its body, so a backlog does not hold it until the loop turns', async () => {
    // The frames on the wire, read by a client of our own (cleartext HTTP/2): for a heartbeat (its
    // body read first) and a poll, the DATA frame that carries the answer must also end the stream.
    // An END_STREAM sent after the body in a frame of its own waits for the body's write to be
    // reported done, which Node does only once the session has flushed (a setImmediate: after every
    // ready socket of the loop's turn is served), so with a backlog every answer waited for the
    // whole backlog (docs/performance.md, "where it comes from").
    const server = http2.createServer();
    server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number) => {
      answerAfterBody(stream, headers, flags, 200, '{"cancel":[]}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const frames = await rawExchange((server.address() as AddressInfo).port, [
        { id: 1, method: 'POST', path: '/heartbeat', body: '{"metrics":{}}' },
        { id: 3, method: 'GET', path: '/poll' },
      ]);
      for (const id of [1, 3]) {
        const data = frames.filter((f) => f.type === DATA && f.stream === id);
        assert.ok(data.length > 0, `stream ${id} got an answer (frames: ${JSON.stringify(frames.map((f) => [f.type, f.flags, f.stream, f.payload.length]))})`);
        assert.equal(data.map((f) => f.payload.toString()).join(''), '{"cancel":[]}');
        const first = data.find((f) => f.payload.length > 0)!;
        assert.equal(first.flags & END_STREAM, END_STREAM, `stream ${id}: END_STREAM on the DATA frame with the body (frames: ${data.map((f) => `${f.payload.length}B flags ${f.flags}`).join(', ')})`);
      }
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

const DATA = 0x0;
const HEADERS = 0x1;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;

interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

/**
 * Sends the requests on one cleartext HTTP/2 connection of our own (HPACK: the static table's
 * :method and :scheme, :path and :authority as literals) and returns every frame received until each request's
 * stream has ended.
 */
async function rawExchange(port: number, requests: { id: number; method: 'GET' | 'POST'; path: string; body?: string }[]): Promise<Frame[]> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const out: Buffer[] = [Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(0x4, 0, 0, Buffer.alloc(0))];
  for (const r of requests) {
    const path = Buffer.from(r.path);
    const authority = Buffer.from('localhost'); // nghttp2 resets a request without one
    const block = Buffer.concat([Buffer.from([r.method === 'GET' ? 0x82 : 0x83, 0x86, 0x04, path.length]), path, Buffer.from([0x01, authority.length]), authority]);
    out.push(frame(HEADERS, END_HEADERS | (r.body === undefined ? END_STREAM : 0), r.id, block));
    if (r.body !== undefined) out.push(frame(DATA, END_STREAM, r.id, Buffer.from(r.body)));
  }
  socket.write(Buffer.concat(out));
  const frames: Frame[] = [];
  const open = new Set(requests.map((r) => r.id));
  let buf = Buffer.alloc(0);
  try {
    for await (const chunk of socket) {
      buf = Buffer.concat([buf, chunk as Buffer]);
      while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
        const len = buf.readUIntBE(0, 3);
        const f = { type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) };
        buf = buf.subarray(9 + len);
        frames.push(f);
        if (f.type === 0x4 && !(f.flags & 0x1)) socket.write(frame(0x4, 0x1, 0, Buffer.alloc(0))); // SETTINGS ACK
        if ((f.type === DATA || f.type === HEADERS) && f.flags & END_STREAM) open.delete(f.stream);
        if (f.type === 0x3) open.delete(f.stream); // RST_STREAM
      }
      if (open.size === 0) break;
    }
  } finally {
    socket.destroy();
  }
  return frames;
}

/** Serves one stream as the agent API does: a POST's body read to its end first (unless refused with a 4xx), then `status` and `body`. */
function answerAfterBody(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, status: number, body: string): void {
  serveAgentStream(stream, headers, flags, 5000, async (req, apiRes) => {
    const res = apiRes as unknown as StreamResponse;
    if (status < 400 && req.method === 'POST') {
      await new Promise<void>((r) => {
        req.on('data', () => undefined);
        req.once('end', () => r());
      });
    }
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(Buffer.from(body));
  });
}
