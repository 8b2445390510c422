/**
 * A result that also claims the next command (POST /v1/agent/commands/{id}/result?next=N,
 * control-plane/http/result-next.ts; issue 18: one request per command instead of two), over real
 * mutual TLS against a real control plane (SQLite, or PostgreSQL with TETHER_TEST_DATABASE=postgres):
 * the next command in the same answer, a hold up to N s, a command submitted while held, a drain
 * and a revocation while held (200 with an empty `next`, the result stored), bad `next` values
 * refused before the result is stored, and the request counted against the poll's rate as well as
 * the result's. Plus the query's fast path against its schema, as poll-wait.test.ts does for `wait`.
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import { z } from 'zod';
import { DEFAULT_AGENT_RATES } from '../../control-plane/http/agent-rate.ts';
import { reportAndPoll, resultNextQuery, resultNextSeconds, type ResultNextDeps } from '../../control-plane/http/result-next.ts';
import { RetryLater } from '../../control-plane/queue/queue.service.ts';
import { HoldSignal } from '../../control-plane/queue/dispatcher.ts';
import { TetherError, forbidden } from '../../common/errors.ts';
import { silentLogger } from '../../common/logger.ts';
import type { HttpError } from '../../common/http-client.ts';
import type { CommandView, ResultResponse } from '../../common/wire.ts';
import { eventually, removeDir, startTestControlPlane, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';

const EMPTY = { command: null, cancel: [] };

async function submit(t: TestControlPlane, cid: string): Promise<number> {
  const r = await t.admin.request<CommandView>('POST', '/v1/commands', { target: { cluster: cid }, type: 'manifest', spec: { manifests: 'kind: X' } });
  return r.body.id;
}

async function stateOf(t: TestControlPlane, id: number): Promise<string> {
  return (await t.admin.request<CommandView>('GET', `/v1/commands/${id}`)).body.state;
}

/** A claimed command of `a` (submitted now), to report on. */
async function claimOne(t: TestControlPlane, a: TestAgent, cid: string): Promise<{ id: number; leaseId: string }> {
  const id = await submit(t, cid);
  const { command } = await a.client.poll(0);
  assert.equal(command?.id, id, 'the command just submitted is claimed');
  return { id, leaseId: command.leaseId };
}

/** One request with the agent's certificate over HTTP/1.1, the answer's status and JSON body as they are. */
function raw(t: TestControlPlane, a: TestAgent, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const agent = new https.Agent({ ca: t.caPem, cert: a.identity.certificate, key: a.keys.privateKeyPem });
  const text = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(path, t.url), { method, agent, headers: text ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) } : {} }, (res) => {
      let out = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (out += c));
      res.on('end', () => {
        agent.destroy();
        resolve({ status: res.statusCode!, json: out ? JSON.parse(out) : undefined });
      });
    });
    req.on('error', (err) => {
      agent.destroy();
      reject(err);
    });
    req.end(text);
  });
}

describe('result + next command in one request (agent API, real mTLS)', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let a: TestAgent;

  beforeEach(async () => {
    t = await startTestControlPlane();
    await t.createCluster('rn1');
    a = await t.agent('rn1', 'cluster-agent');
  });
  afterEach(async () => {
    a?.client.close();
    await t?.close().catch(() => undefined);
    if (t) removeDir(t.dataDir);
  });

  it('(a) the result is stored and the next queued command is claimed in the same answer', async () => {
    const first = await claimOne(t, a, 'rn1');
    const second = await submit(t, 'rn1');
    const r = await a.client.reportAndPoll(first.id, { leaseId: first.leaseId, outcome: 'succeeded' }, 5);
    assert.equal(r.status, 'applied');
    assert.equal(r.state, 'succeeded');
    assert.ok(r.next, `the answer has next: ${JSON.stringify(r)}`);
    assert.equal(r.next.command?.id, second, 'the next command is claimed');
    assert.deepEqual(r.next.cancel, []);
    assert.equal(await stateOf(t, first.id), 'succeeded');
    assert.equal(await stateOf(t, second), 'running', 'claimed by this answer');
    // The claim is a real one: its result is taken (and a second identical result is a duplicate).
    const again = await a.client.reportAndPoll(second, { leaseId: r.next.command.leaseId, outcome: 'succeeded' }, 0);
    assert.deepEqual(again, { status: 'applied', state: 'succeeded', next: EMPTY });
    const dup = await a.client.reportAndPoll(second, { leaseId: r.next.command.leaseId, outcome: 'succeeded' }, 0);
    assert.deepEqual(dup, { status: 'duplicate', state: 'succeeded', next: EMPTY });
    // Without next: the answer of old, exactly.
    const third = await claimOne(t, a, 'rn1');
    assert.deepEqual(await a.client.report(third.id, { leaseId: third.leaseId, outcome: 'succeeded' }), { status: 'applied', state: 'succeeded' });
  });

  it('(b) with nothing queued it holds up to next seconds, then answers an empty next; the result is stored before', async () => {
    const c = await claimOne(t, a, 'rn1');
    const t0 = Date.now();
    const pending = a.client.reportAndPoll(c.id, { leaseId: c.leaseId, outcome: 'failed', error: { code: 'executor_error', message: 'no', retryable: false } }, 2);
    // Stored while the request is still held.
    await eventually(async () => (await stateOf(t, c.id)) === 'failed', 5000, 'the result stored while held');
    await eventually(() => t.cp.dispatcher.held === 1, 5000, 'the request held');
    const r = await pending;
    const took = Date.now() - t0;
    assert.ok(took >= 1900, `held ${took} ms, about 2000`);
    assert.ok(took < 6000, `held ${took} ms, about 2000`);
    assert.deepEqual(r, { status: 'applied', state: 'failed', next: EMPTY });
  });

  it('(c) a command submitted while the request is held is delivered in its answer', async () => {
    const c = await claimOne(t, a, 'rn1');
    const t0 = Date.now();
    const pending = a.client.reportAndPoll(c.id, { leaseId: c.leaseId, outcome: 'succeeded' }, 20);
    await eventually(() => t.cp.dispatcher.held === 1, 5000, 'the request held');
    const id = await submit(t, 'rn1');
    const r = await pending;
    assert.ok(Date.now() - t0 < 10_000, 'answered when the command came, not after 20 s');
    assert.equal(r.status, 'applied');
    assert.equal(r.next?.command?.id, id);
    assert.equal(await stateOf(t, id), 'running');
    assert.equal(await stateOf(t, c.id), 'succeeded');
  });

  it('(d) a drain while held answers 200 with an empty next, and the result is stored (found after a restart)', async () => {
    const c = await claimOne(t, a, 'rn1');
    const pending = a.client.reportAndPoll(c.id, { leaseId: c.leaseId, outcome: 'succeeded' }, 30);
    await eventually(() => t.cp.dispatcher.held === 1, 5000, 'the request held');
    const closing = t.cp.close();
    const r = await pending;
    await closing;
    assert.deepEqual(r, { status: 'applied', state: 'succeeded', next: EMPTY }, 'the stored result is never answered as an error');
    // The same data folder (or PostgreSQL database) again: the result was kept.
    a.client.close();
    const again = await startTestControlPlane({ dataDir: t.dataDir });
    t = again;
    assert.equal(await stateOf(t, c.id), 'succeeded');
  });

  it('(e) a revocation while held answers 200 with an empty next, and the result is stored; the next request is refused', async () => {
    const c = await claimOne(t, a, 'rn1');
    const queued = await submit(t, 'rn1');
    // Another command queued meanwhile would be claimed at once: take it first, leave the queue empty.
    const other = (await a.client.poll(0)).command;
    assert.equal(other?.id, queued);
    const pending = a.client.reportAndPoll(c.id, { leaseId: c.leaseId, outcome: 'succeeded' }, 30);
    await eventually(() => t.cp.dispatcher.held === 1, 5000, 'the request held');
    await t.admin.request('POST', `/v1/agents/${a.identity.agentId}/revoke`);
    const r = await pending;
    assert.deepEqual(r, { status: 'applied', state: 'succeeded', next: EMPTY });
    assert.equal(await stateOf(t, c.id), 'succeeded');
    // What the revocation refuses comes with the agent's next request, as for any poll.
    await assert.rejects(a.client.poll(0), (e: HttpError) => e.status === 403);
  });

  it('(f) a bad next (121, -1, abc, 1e9) is refused 400 {error:{code,message}} and the result is not stored', async () => {
    const c = await claimOne(t, a, 'rn1');
    for (const bad of ['121', '-1', 'abc', '1e9', '999']) {
      const r = await raw(t, a, 'POST', `/v1/agent/commands/${c.id}/result?next=${bad}`, { leaseId: c.leaseId, outcome: 'succeeded' });
      assert.equal(r.status, 400, `next=${bad}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.error.code, 'invalid_request');
      assert.equal(typeof r.json.error.message, 'string');
      assert.equal(await stateOf(t, c.id), 'running', `next=${bad}: the result is not stored`);
    }
    // The same result with a good next is taken.
    const ok = await raw(t, a, 'POST', `/v1/agent/commands/${c.id}/result?next=0`, { leaseId: c.leaseId, outcome: 'succeeded' });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json, { status: 'applied', state: 'succeeded', next: EMPTY });
  });

  it('(f2) a refused result (stale lease) is refused as without next, and claims nothing', async () => {
    const c = await claimOne(t, a, 'rn1');
    const queued = await submit(t, 'rn1');
    await assert.rejects(a.client.reportAndPoll(c.id, { leaseId: 'not-the-lease', outcome: 'succeeded' }, 0), (e: HttpError) => e.status === 409 && e.code === 'stale_lease');
    assert.equal(await stateOf(t, queued), 'queued', 'nothing was claimed');
  });
});

describe('result + next: the request counts against the poll rate too (real mTLS)', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let a: TestAgent;
  before(async () => {
    // Two polls and two results for the whole test (refilled once in ~1000 s).
    t = await startTestControlPlane({ agentRequestRates: { ...DEFAULT_AGENT_RATES, poll: { perSecond: 0.001, burst: 2 }, result: { perSecond: 0.001, burst: 2 } } });
    await t.createCluster('rn2');
    a = await t.agent('rn2', 'cluster-agent');
  });
  after(async () => {
    a?.client.close();
    await t?.close();
    if (t) removeDir(t.dataDir);
  });

  it('(g) a result with next takes a poll: the budget of two polls is spent by a poll and a result with next', async () => {
    const first = await claimOne(t, a, 'rn2'); // poll 1
    const second = await submit(t, 'rn2');
    const r = await a.client.reportAndPoll(first.id, { leaseId: first.leaseId, outcome: 'succeeded' }, 0); // result 1, poll 2
    assert.equal(r.next?.command?.id, second);
    await assert.rejects(a.client.poll(0), (e: HttpError) => e.status === 429 && e.code === 'rate_limited', 'the poll budget is spent');
    // Refused on the poll class: neither class is taken, and the result is not stored.
    await assert.rejects(a.client.reportAndPoll(second, { leaseId: r.next.command.leaseId, outcome: 'succeeded' }, 0), (e: HttpError) => e.status === 429 && /poll/.test(e.message));
    assert.equal(await stateOf(t, second), 'running', 'the refused result is not stored');
    // The result budget still has its second request (the refusal took none).
    assert.deepEqual(await a.client.report(second, { leaseId: r.next.command.leaseId, outcome: 'succeeded' }), { status: 'applied', state: 'succeeded' });
  });
});

describe('result next query (agent API)', () => {
  function viaSchema(search: string): number | undefined | 'refused' {
    try {
      return resultNextQuery.parse(Object.fromEntries(new URLSearchParams(search))).next;
    } catch (err) {
      assert.ok(err instanceof z.ZodError);
      return 'refused';
    }
  }
  function viaFastPath(search: string): number | undefined | 'refused' {
    try {
      return resultNextSeconds(search);
    } catch (err) {
      assert.ok(err instanceof z.ZodError, `not a ZodError: ${String(err)}`);
      return 'refused';
    }
  }
  const cases: [string, number | undefined | 'refused'][] = [
    ['', undefined],
    ['next=0', 0],
    ['next=25', 25],
    ['next=007', 7],
    ['next=120', 120],
    ['next=121', 'refused'],
    ['next=999', 'refused'],
    ['next=1000', 'refused'],
    ['next=-1', 'refused'],
    ['next=abc', 'refused'],
    ['next=1.5', 1.5],
    ['next=5&other=1', 5],
    ['other=1', undefined],
    ['wait=5', undefined],
    ['next=%32%35', 25],
  ];
  for (const [search, want] of cases) {
    it(`"${search}" → ${String(want)}, as resultNextQuery reads it`, () => {
      assert.equal(viaSchema(search), want, 'the case itself is wrong');
      assert.equal(viaFastPath(search), want);
    });
  }
});

describe('result + next: what the poll part throws (result-next.ts, the queue stubbed)', () => {
  const agent = { agentId: 'ag', aid: 'aaaaa', cid: 'c1', role: 'cluster-agent' as const, nid: null };
  const result = { leaseId: 'l', outcome: 'succeeded' as const };
  const deps = (poll: () => Promise<never>, barrier: () => Promise<void> | undefined = () => undefined) => ({
    queue: { report: async () => ({ status: 'applied' as const, state: 'succeeded' as const }), poll } as unknown as ResultNextDeps['queue'],
    durability: { barrier } as unknown as ResultNextDeps['durability'],
    log: silentLogger(),
    longPollSeconds: 25,
  });

  it('a storage failure while claiming answers the stored result with an empty next', async () => {
    const storage = Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_WRITE' });
    const r = await reportAndPoll(deps(() => Promise.reject(storage)), agent, 1, result, 5, new HoldSignal());
    assert.deepEqual(r, { status: 'applied', state: 'succeeded', next: EMPTY });
  });

  it('so does any other failure of the poll part (a drain, a revocation, a bug)', async () => {
    for (const err of [new RetryLater('draining', 'draining', 3), forbidden('revoked', 'certificate_revoked'), new TypeError('bug')]) {
      const r = await reportAndPoll(deps(() => Promise.reject(err)), agent, 1, result, 5, new HoldSignal());
      assert.deepEqual(r.next, EMPTY, String(err));
    }
  });

  it('but a failed barrier (the result itself not known on disk) is an error, not a 200', async () => {
    const eio = new TetherError('storage_unavailable', 'fsync failed', { status: 503 });
    await assert.rejects(reportAndPoll(deps(() => Promise.reject(new Error('x')), () => Promise.reject(eio)), agent, 1, result, 5, new HoldSignal()), (e) => e === eio);
  });
});
