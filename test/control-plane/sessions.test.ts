/**
 * The web console's sessions (issue 14) against a real control plane over real TLS: sign-in
 * trades an API token for an HttpOnly/Secure/SameSite=Strict cookie; writes made with the cookie
 * need the session's CSRF token and the server's own origin; bearer tokens work as before; sign-out,
 * expiry (a manual clock), the per-account cap and revoking the token end a session; the log
 * stream follows with the cookie; the cookie opens no agent route, bootstrap or /metrics.
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ManualClock } from '../../common/clock.ts';
import { readSse } from '../../control-plane/cli/sse.ts';
import { hashSecret } from '../../control-plane/auth/secrets.ts';
import { removeDir, startTestControlPlane, type TestControlPlane } from '../support/control-plane.ts';
import { databaseText, onPostgres } from '../support/postgres.ts';

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  json: any;
}
interface Opts {
  cookie?: string;
  csrf?: string;
  origin?: string;
  bearer?: string;
  body?: unknown;
  raw?: string;
}

describe('console sessions (cookie, CSRF, expiry) on a real control plane', function () {
  this.timeout(60_000);
  const clock = new ManualClock();
  let t: TestControlPlane;
  let agentOpts: https.Agent;

  before(async () => {
    t = await startTestControlPlane({ loginFailuresPerMinute: 5, sessionsPerAccount: 3 }, { clock, reaper: false });
    await t.createCluster('alpha');
    agentOpts = new https.Agent({ ca: t.caPem });
  });
  after(async () => {
    agentOpts?.destroy();
    if (t) {
      await t.close();
      removeDir(t.dataDir);
    }
  });

  function call(method: string, path: string, o: Opts = {}): Promise<Answer> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (o.cookie) headers.cookie = o.cookie;
    if (o.csrf) headers['x-csrf-token'] = o.csrf;
    if (o.origin) headers.origin = o.origin;
    if (o.bearer) headers.authorization = `Bearer ${o.bearer}`;
    const text = o.raw ?? (o.body === undefined ? undefined : JSON.stringify(o.body));
    if (text !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(text));
    }
    return new Promise((resolve, reject) => {
      const req = https.request(new URL(path, t.url), { method, headers, agent: agentOpts }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          let json: unknown = body;
          try {
            json = body ? JSON.parse(body) : undefined;
          } catch {
            /* not JSON */
          }
          resolve({ status: res.statusCode!, headers: res.headers, json });
        });
      });
      req.on('error', reject);
      req.end(text);
    });
  }

  /** Signs in with `token`; returns the Cookie header to send back and the answer. */
  async function signIn(token = t.adminToken): Promise<{ cookie: string; csrf: string; answer: Answer }> {
    const answer = await call('POST', '/v1/sessions', { body: { token } });
    assert.equal(answer.status, 201, JSON.stringify(answer.json));
    const set = answer.headers['set-cookie']![0]!;
    return { cookie: set.split(';')[0]!, csrf: answer.json.csrfToken, answer };
  }

  it('signs in with an API token: an HttpOnly, Secure, SameSite=Strict cookie with an expiry; only its hash is stored', async () => {
    const { cookie, csrf, answer } = await signIn();
    const set = answer.headers['set-cookie'];
    assert.equal(set?.length, 1);
    const parts = set![0]!.split(';').map((p) => p.trim());
    assert.match(parts[0]!, /^tether_session=[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(parts.slice(1).sort(), ['HttpOnly', 'Max-Age=43200', 'Path=/', 'SameSite=Strict', 'Secure']);
    assert.equal(answer.headers['cache-control'], 'no-store');
    assert.equal(answer.json.expiresAt, new Date(clock.now() + 12 * 3600_000).toISOString());
    assert.equal(answer.json.account.aid, t.aid);
    assert.equal(answer.json.account.name, 'default');
    assert.match(csrf, /^[A-Za-z0-9_-]{43}$/);
    const secret = cookie.split('=')[1]!;
    assert.ok(!JSON.stringify(answer.json).includes(t.adminToken.split('.')[1]!), 'the API token is not echoed');
    const db = onPostgres ? await databaseText(resolve(t.dataDir)) : readFileSync(join(t.dataDir, 'tether.db'));
    assert.ok(!db.includes(secret) && !db.includes(csrf), 'neither the session secret nor the CSRF token is stored in clear');
    assert.equal(statSync(join(t.dataDir, 'session-key')).mode & 0o777, 0o600);

    const current = await call('GET', '/v1/sessions/current', { cookie });
    assert.equal(current.status, 200);
    assert.deepEqual(current.json, answer.json);
    assert.equal((await call('GET', '/v1/clusters', { cookie })).json.clusters[0].cid, 'alpha');
    assert.equal((await call('GET', '/v1/sessions/current')).status, 401);
    assert.equal((await call('GET', '/v1/sessions/current', { cookie: `tether_session=${'A'.repeat(43)}` })).json.error.code, 'invalid_session');
    assert.equal((await call('GET', '/v1/sessions/current', { cookie: 'tether_session=../../x' })).json.error.code, 'invalid_session');
    // Only the cookie of that name is the session.
    const other = await call('GET', '/v1/clusters', { cookie: `tether_sessionx=${secret}; other=${secret}` });
    assert.equal(other.status, 401);
    assert.equal(other.json.error.code, 'missing_token');
    assert.equal((await call('GET', '/v1/clusters', { cookie: `theme=dark; ${cookie}` })).status, 200);
    // A bearer token is not a session.
    assert.equal((await call('GET', '/v1/sessions/current', { bearer: t.adminToken })).json.error.code, 'no_session');
  });

  it('refuses a write made with the cookie without the CSRF token, with a wrong one, or from another origin', async () => {
    const { cookie, csrf } = await signIn();
    const create = (o: Opts) => call('POST', '/v1/clusters', { cookie, body: { cid: `c${Math.random().toString(36).slice(2, 8)}` }, ...o });
    const noCsrf = await create({});
    assert.equal(noCsrf.status, 403);
    assert.equal(noCsrf.json.error.code, 'csrf_failed');
    const wrong = await create({ csrf: `${csrf.slice(0, -1)}${csrf.endsWith('A') ? 'B' : 'A'}` });
    assert.equal(wrong.status, 403);
    assert.equal(wrong.json.error.code, 'csrf_failed');
    assert.equal((await create({ csrf: 'short' })).json.error.code, 'csrf_failed');
    for (const origin of ['https://evil.example', 'null', `http://${new URL(t.url).host}`, `${t.url}.evil.example`]) {
      const cross = await create({ csrf, origin });
      assert.equal(cross.status, 403, origin);
      assert.equal(cross.json.error.code, 'cross_origin', origin);
    }
    assert.equal((await create({ csrf })).status, 201);
    assert.equal((await create({ csrf, origin: t.url })).status, 201);
    // Another session's CSRF token does not do.
    const other = await signIn();
    assert.equal((await create({ csrf: other.csrf })).json.error.code, 'csrf_failed');
    // Reads need none.
    assert.equal((await call('GET', '/v1/commands', { cookie })).status, 200);
  });

  it('still takes a bearer token without any CSRF token, and prefers it to a cookie', async () => {
    assert.equal((await call('POST', '/v1/clusters', { bearer: t.adminToken, body: { cid: 'bearer1' } })).status, 201);
    assert.equal((await call('POST', '/v1/clusters', { bearer: t.adminToken, cookie: 'tether_session=junk', body: { cid: 'bearer2' } })).status, 201);
  });

  it('signs out: the session is revoked on the server and the cookie cleared', async () => {
    const { cookie, csrf } = await signIn();
    assert.equal((await call('DELETE', '/v1/sessions/current', { cookie })).json.error.code, 'csrf_failed');
    const out = await call('DELETE', '/v1/sessions/current', { cookie, csrf });
    assert.equal(out.status, 204);
    assert.match(out.headers['set-cookie']![0]!, /^tether_session=; HttpOnly; Secure; SameSite=Strict; Path=\/; Max-Age=0$/);
    for (const [m, p] of [['GET', '/v1/sessions/current'], ['GET', '/v1/clusters'], ['DELETE', '/v1/sessions/current']] as const) {
      const again = await call(m, p, { cookie, csrf });
      assert.equal(again.status, 401, `${m} ${p}`);
      assert.equal(again.json.error.code, 'invalid_session');
    }
  });

  // Before any test moves the clock far ahead: the agent's certificate is checked against real time.
  it('streams a job log over SSE with the cookie, resuming after Last-Event-ID', async () => {
    const { cookie } = await signIn();
    const agent = await t.agent('alpha', 'cluster-agent');
    try {
      const { id } = (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'alpha' }, type: 'manifest', spec: { manifests: 'kind: X' } })).body;
      let claim = (await agent.client.poll(0)).command!;
      while (claim.id !== id) {
        await agent.client.report(claim.id, { leaseId: claim.leaseId, outcome: 'succeeded' });
        claim = (await agent.client.poll(0)).command!;
      }
      await agent.client.logs(id, claim.leaseId, [{ stream: 'stdout', text: 'one' }, { stream: 'stdout', text: 'two' }]);
      const open = (headers: Record<string, string>) =>
        new Promise<IncomingMessage>((resolve, reject) => {
          const req = https.request(new URL(`/v1/commands/${id}/logs`, t.url), { headers: { accept: 'text/event-stream', cookie, ...headers }, agent: agentOpts }, resolve);
          req.on('error', reject);
          req.end();
        });
      // Without the cookie: refused.
      const refused = await new Promise<number>((resolve, reject) => https.get(new URL(`/v1/commands/${id}/logs?follow=1`, t.url), { agent: agentOpts }, (r) => (r.resume(), resolve(r.statusCode!))).on('error', reject));
      assert.equal(refused, 401);

      const first = await open({});
      assert.equal(first.statusCode, 200);
      assert.match(String(first.headers['content-type']), /^text\/event-stream/);
      let lastId = '';
      for await (const ev of readSse(first)) {
        if (ev.event === 'log') {
          assert.equal(JSON.parse(ev.data).text, 'one');
          lastId = ev.id!;
          break; // the connection drops after the first line
        }
      }
      first.destroy();
      await agent.client.logs(id, claim.leaseId, [{ stream: 'stderr', text: 'three' }]);
      const resumed = await open({ 'last-event-id': lastId });
      const texts: string[] = [];
      const reading = (async () => {
        for await (const ev of readSse(resumed)) {
          if (ev.event === 'log') texts.push(JSON.parse(ev.data).text);
          if (ev.event === 'end') return JSON.parse(ev.data).state as string;
        }
        return undefined;
      })();
      await agent.client.report(id, { leaseId: claim.leaseId, outcome: 'succeeded', outputs: { ok: true } });
      assert.equal(await reading, 'succeeded');
      assert.deepEqual(texts, ['two', 'three']);
      resumed.destroy();
    } finally {
      agent.client.close();
    }
  });

  it('ends a session after its idle time and at its absolute expiry (manual clock), and sweeps expired rows', async () => {
    const idle = await signIn();
    clock.advance(3599_000);
    assert.equal((await call('GET', '/v1/clusters', { cookie: idle.cookie })).status, 200, 'used just before the idle limit');
    clock.advance(3599_000);
    assert.equal((await call('GET', '/v1/clusters', { cookie: idle.cookie })).status, 200, 'the idle time restarts on use');
    clock.advance(3600_000);
    const gone = await call('GET', '/v1/clusters', { cookie: idle.cookie });
    assert.equal(gone.status, 401);
    assert.equal(gone.json.error.code, 'session_expired');

    const busy = await signIn();
    for (let h = 0; h < 14; h++) {
      clock.advance(3000_000); // 50 min: never idle
      assert.equal((await call('GET', '/v1/sessions/current', { cookie: busy.cookie })).status, 200, `after ${(h + 1) * 50} min`);
    }
    clock.advance(3600_000 * 12 - 14 * 3000_000 - 1000);
    assert.equal((await call('GET', '/v1/clusters', { cookie: busy.cookie })).status, 200, 'a second before 12 h');
    clock.advance(1000);
    assert.equal((await call('GET', '/v1/clusters', { cookie: busy.cookie })).json.error.code, 'session_expired');

    // Rows nobody uses again are swept.
    await signIn();
    const live = await signIn();
    clock.advance(3600_000);
    assert.ok((await t.cp.sessions.sweep()) >= 2);
    assert.equal((await call('GET', '/v1/clusters', { cookie: live.cookie })).json.error.code, 'invalid_session');
  });

  it('keeps at most sessionsPerAccount live sessions per account: the oldest is ended', async () => {
    const first = await signIn();
    clock.advance(1000);
    const rest = [];
    for (let i = 0; i < 3; i++) {
      rest.push(await signIn());
      clock.advance(1000);
    }
    assert.equal((await call('GET', '/v1/clusters', { cookie: first.cookie })).status, 401);
    for (const s of rest) assert.equal((await call('GET', '/v1/clusters', { cookie: s.cookie })).status, 200);
  });

  it('ends the sessions of an API token when the token is revoked', async () => {
    const made = (await call('POST', '/v1/api-tokens', { bearer: t.adminToken, body: { name: 'console user' } })).json as { token: string; keyId: string };
    const s = await signIn(made.token);
    const current = await call('GET', '/v1/sessions/current', { cookie: s.cookie });
    assert.equal(current.json.account.tokenName, 'console user');
    assert.equal(current.json.account.keyId, made.keyId);
    assert.equal((await call('DELETE', `/v1/api-tokens/${made.keyId}`, { bearer: t.adminToken })).status, 204);
    const rows = await t.cp.db.selectFrom('sessions').select('id_hash').where('key_id', '=', made.keyId).execute();
    assert.deepEqual(rows, [], 'its sessions are deleted with the revocation');
    const after = await call('GET', '/v1/clusters', { cookie: s.cookie });
    assert.equal(after.status, 401);
    // A session row of a revoked token (one a sign-in racing the revocation would leave) opens nothing either.
    const secret = 'R'.repeat(43);
    await t.cp.db.insertInto('sessions').values({ id_hash: hashSecret(secret), aid: t.aid, key_id: made.keyId, created_at: clock.now(), last_seen_at: clock.now(), expires_at: clock.now() + 3600_000 }).execute();
    const raced = await call('GET', '/v1/clusters', { cookie: `tether_session=${secret}` });
    assert.equal(raced.status, 401);
    assert.equal(raced.json.error.code, 'token_revoked');
    // A session never outlives its token's own expiry either.
    const short = (await call('POST', '/v1/api-tokens', { bearer: t.adminToken, body: { name: 'short', ttlSeconds: 600 } })).json as { token: string; expiresAt: string };
    const s2 = await signIn(short.token);
    assert.equal(s2.answer.json.expiresAt, short.expiresAt);
    assert.match(s2.answer.headers['set-cookie']![0]!, /Max-Age=600(;|$)/);
  });

  it('never opens /metrics, bootstrap or the agent API with the cookie', async () => {
    const { cookie } = await signIn();
    assert.equal((await call('GET', '/metrics', { cookie })).status, 401);
    const agentRoute = await call('GET', '/v1/agent/whoami', { cookie });
    assert.equal(agentRoute.status, 401);
    assert.equal(agentRoute.json.error.code, 'client_certificate_required');
    const boot = await call('POST', '/v1/bootstrap', { cookie, body: { token: 'tether_bt_x', csr: 'x' } });
    assert.ok(boot.status === 400 || boot.status === 401, String(boot.status));
  });

  it('counts failed sign-ins against the address (429 past the limit, even for a good token) and bounds the body', async () => {
    clock.advance(61_000); // a fresh window
    const big = await call('POST', '/v1/sessions', { raw: JSON.stringify({ token: 'x'.repeat(2000) }) });
    assert.equal(big.status, 413);
    const tampered = t.adminToken.slice(0, -1) + (t.adminToken.endsWith('A') ? 'B' : 'A');
    for (const bad of [tampered, `tether_pat_${'a'.repeat(12)}.${'b'.repeat(43)}`, 'nope', tampered, tampered]) {
      const r = await call('POST', '/v1/sessions', { body: { token: bad } });
      assert.equal(r.status, 401, bad);
      assert.equal(r.headers['set-cookie'], undefined);
    }
    const limited = await call('POST', '/v1/sessions', { body: { token: t.adminToken } });
    assert.equal(limited.status, 429);
    assert.equal(limited.json.error.code, 'rate_limited');
    clock.advance(61_000);
    assert.equal((await call('POST', '/v1/sessions', { body: { token: t.adminToken } })).status, 201);
  });
});
