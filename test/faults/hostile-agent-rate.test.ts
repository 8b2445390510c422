/**
 * One agent flooding the agent API (a hostile or broken agent): each agent's requests are limited
 * per route class (control-plane/http/agent-rate.ts). The flooder gets 429 rate_limited with
 * Retry-After, before its body is read, counted in /metrics; another agent's heartbeats, claims and
 * results keep succeeding. Outcomes are counted, nothing is timed: the rates here refill one
 * request per 1000 s, so what passes is the burst, exactly.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { HttpClient, HttpError } from '../../common/http-client.ts';
import { parseAgentRates } from '../../control-plane/http/agent-rate.ts';
import { removeDir, startTestControlPlane, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';

const MANIFEST = { manifests: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n' };
const SLOW = 0.001; // one request per 1000 s: nothing refills during the test

/** One raw HTTP/2 request with the agent's certificate: status, headers, body text. */
function rawRequest(t: TestControlPlane, a: TestAgent, path: string, o: { body?: Buffer; endBody?: boolean } = {}): Promise<{ status: number; retryAfter: string | undefined; text: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(t.url, { ca: t.caPem, cert: a.identity.certificate, key: a.keys.privateKeyPem });
    session.on('error', reject);
    const headers: http2.OutgoingHttpHeaders = { ':method': 'POST', ':path': path, 'content-type': 'application/json' };
    if (o.body) headers['content-length'] = String(o.body.length);
    const req = session.request(headers, { endStream: !o.body });
    let status = 0;
    let retryAfter: string | undefined;
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      status = Number(h[':status']);
      retryAfter = h['retry-after'] as string | undefined;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('close', () => {
      session.close();
      resolve({ status, retryAfter, text: Buffer.concat(chunks).toString('utf8') });
    });
    req.on('error', () => undefined);
    // Half a body and never the rest: only an answer given before reading it can come back.
    if (o.body) req.write(o.endBody ? o.body : o.body.subarray(0, o.body.length >> 1));
    if (o.body && o.endBody) req.end();
  });
}

async function outcome(p: Promise<unknown>): Promise<'ok' | number> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (err instanceof HttpError && err.code === 'rate_limited') return err.status;
    throw err;
  }
}

describe('faults: an agent flooding the agent API', function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let flooder: TestAgent;
  let victim: TestAgent;

  before(async () => {
    t = await startTestControlPlane({
      agentRequestRates: {
        heartbeat: { perSecond: SLOW, burst: 10 },
        poll: { perSecond: SLOW, burst: 5 },
        result: { perSecond: SLOW, burst: 50 },
        logs: { perSecond: SLOW, burst: 50 },
        other: { perSecond: SLOW, burst: 50 },
      },
    });
    await t.createCluster('flood');
    await t.createCluster('calm');
    flooder = await t.agent('flood', 'cluster-agent');
    victim = await t.agent('calm', 'cluster-agent');
  });
  after(async () => {
    flooder?.client.close();
    victim?.client.close();
    await t?.close();
    if (t) removeDir(t.dataDir);
  });

  it('refuses the flooder past its burst (429 rate_limited) while the other agent heartbeats, claims and reports', async () => {
    // 40 heartbeats from the flooder, 8 at once (below the 32 streams a connection may open), the
    // victim's work in the middle of them.
    const flood = (async () => {
      const out: ('ok' | number)[] = [];
      for (let i = 0; i < 5; i++) out.push(...(await Promise.all(Array.from({ length: 8 }, () => outcome(flooder.client.heartbeat({ running: [] }))))));
      return out;
    })();
    const victimBeats = Promise.all(Array.from({ length: 8 }, () => outcome(victim.client.heartbeat({ running: [] }))));
    const { id } = (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'calm' }, type: 'manifest', spec: MANIFEST })).body;
    const claim = await victim.client.poll(5);
    assert.equal(claim.command?.id, id, 'the victim claims its command');
    await victim.client.report(id, { leaseId: claim.command!.leaseId, outcome: 'succeeded' });
    const floods = await flood;
    assert.equal(floods.filter((o) => o === 'ok').length, 10, 'the burst passes');
    assert.equal(floods.filter((o) => o === 429).length, 30, 'the rest is refused 429 rate_limited');
    assert.deepEqual(await victimBeats, Array(8).fill('ok'), "the other agent's heartbeats all succeed");
    // The flooder's other classes have their own buckets: its poll still answers.
    assert.equal(await outcome(flooder.client.poll(0)), 'ok');
  });

  it('answers 429 with Retry-After before reading the body, and counts it in /metrics', async () => {
    // A heartbeat whose body never ends: the refusal can only come from before the body is read.
    const r = await rawRequest(t, flooder, '/v1/agent/heartbeat', { body: Buffer.from(JSON.stringify({ running: [], version: 'x'.repeat(60) })) });
    assert.equal(r.status, 429);
    assert.equal(JSON.parse(r.text).error.code, 'rate_limited');
    assert.ok(Number(r.retryAfter) >= 1, `Retry-After is a number of seconds (got ${r.retryAfter})`);
    // The victim's complete heartbeat over a raw stream passes.
    const ok = await rawRequest(t, victim, '/v1/agent/heartbeat', { body: Buffer.from('{"running":[]}'), endBody: true });
    assert.equal(ok.status, 200);
    const token = readFileSync(t.cp.metricsTokenFile, 'utf8').trim();
    const metrics = (await new HttpClient({ baseUrl: t.url, ca: t.caPem, bearerToken: token }).request<string>('GET', '/metrics')).body;
    const m = /^tether_agent_requests_rate_limited_total\{class="heartbeat"\} (\d+)$/m.exec(metrics);
    assert.ok(m, 'the counter is exported');
    assert.equal(Number(m[1]), 31, '30 refused in the flood, one here');
  });

  it('polls: the flooder past its burst is refused, the victim still claims', async () => {
    // Burst 5, one used above: 4 more immediate polls pass, the rest are refused.
    const polls = await Promise.all(Array.from({ length: 10 }, () => outcome(flooder.client.poll(0))));
    assert.equal(polls.filter((o) => o === 'ok').length, 4);
    assert.equal(polls.filter((o) => o === 429).length, 6);
    const { id } = (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'calm' }, type: 'manifest', spec: MANIFEST })).body;
    assert.equal((await victim.client.poll(5)).command?.id, id);
  });
});

describe('agent rate limits: TETHER_AGENT_RATE_LIMITS', () => {
  it('parses off, named classes over the defaults, and refuses what is malformed', () => {
    assert.equal(parseAgentRates('off'), false);
    const r = parseAgentRates('heartbeat=1/10, logs=5.5/100');
    assert.ok(r && !('error' in r));
    assert.deepEqual(r.heartbeat, { perSecond: 1, burst: 10 });
    assert.deepEqual(r.logs, { perSecond: 5.5, burst: 100 });
    assert.deepEqual(r.poll, { perSecond: 50, burst: 500 });
    for (const bad of ['heartbeat=1', 'beats=1/2', 'poll=0/5', 'poll=1/0']) {
      const e = parseAgentRates(bad);
      assert.ok(e && 'error' in e, `${bad} is refused`);
    }
  });
});
