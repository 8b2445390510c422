/**
 * The agent API on raw HTTP/2 streams (control-plane/http/agent-stream.ts) answers as it did
 * through Node's compatibility layer, on a real control plane over mTLS: JSON answers without a
 * Date header, HEAD without a body, a refused upload cut short while its session lives on, a 404
 * for a path outside the agent API, and a client resetting its held poll without harm.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
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

  it('ends its stream without a callback, so no ERR_STREAM_DESTROYED error is built per answer; a refused upload still gets one', async () => {
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

  it('completes the write of an answer to a read body before its stream is destroyed, so Node builds no ERR_STREAM_DESTROYED for it', async () => {
    // Node's Writable builds an ERR_STREAM_DESTROYED error (stack trace, util.format) whenever a write
    // completes on a destroyed stream, listened for or not; and Node destroys a stream whose request
    // body was read to its end as soon as nghttp2 has sent our END_STREAM. Each server stream's
    // _write is watched: was the stream already destroyed when the write completed?
    const late: string[] = [];
    let writes = 0;
    const server = http2.createServer();
    server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number) => {
      const path = String(headers[':path']);
      const w = stream as unknown as { _write: (chunk: Buffer, enc: string, cb: (err?: Error | null) => void) => void };
      const write = w._write.bind(stream);
      w._write = (chunk, enc, cb) => {
        writes++;
        write(chunk, enc, (err) => {
          if (stream.destroyed) late.push(path);
          cb(err);
        });
      };
      answerAfterBody(stream, headers, flags, 200, '{"cancel":[]}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      for (let i = 0; i < 20; i++) {
        const hb = await call(session, { ':method': 'POST', ':path': '/heartbeat', 'content-type': 'application/json' }, '{"metrics":{}}');
        assert.equal(hb.status, 200);
        assert.deepEqual(JSON.parse(hb.body), { cancel: [] });
        const poll = await call(session, { ':method': 'GET', ':path': '/poll' });
        assert.equal(poll.status, 200);
        assert.deepEqual(JSON.parse(poll.body), { cancel: [] });
      }
      await new Promise((r) => setTimeout(r, 100)); // the last streams' write completions have run
      assert.equal(writes, 40, 'every answer wrote its body');
      assert.deepEqual(late, [], 'no answer completed its write on a destroyed stream');
    } finally {
      session.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});

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
