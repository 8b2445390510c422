/**
 * The REST API at its edges: admin authentication, account isolation, malformed and oversized
 * input (4xx, JSON errors, queue intact), log following over SSE, metrics.
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { HttpClient, HttpError } from '../../common/http-client.ts';
import type { CommandView } from '../../common/wire.ts';
import { readSse } from '../../control-plane/cli/sse.ts';
import { REPO_ROOT, startTestControlPlane, removeDir, type TestControlPlane } from '../support/control-plane.ts';

/** A raw HTTPS request, for bodies the JSON client would never send. */
function raw(t: TestControlPlane, method: string, path: string, body: string | Buffer, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; json: any }>((resolve, reject) => {
    const req = https.request(new URL(path, t.url), { method, ca: t.caPem, headers: { authorization: `Bearer ${t.adminToken}`, 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = text;
        }
        resolve({ status: res.statusCode ?? 0, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('REST API edges', () => {
  let t: TestControlPlane;
  const queued = async () => (await t.admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?limit=200')).body.commands;

  before(async () => {
    t = await startTestControlPlane({ bodyLimitBytes: 64 * 1024 });
    await t.createCluster('alpha');
    await t.admin.request('POST', '/v1/commands', { target: { cluster: 'alpha' }, type: 'manifest', spec: { manifests: 'kind: ConfigMap' } });
  });
  after(async () => {
    await t.close();
    removeDir(t.dataDir);
  });

  describe('admin authentication', () => {
    const as = (token: string | undefined) => new HttpClient({ baseUrl: t.url, ca: t.caPem, ...(token ? { bearerToken: token } : {}) });
    const refusedWith = async (token: string | undefined, code: string) => {
      const c = as(token);
      const err = await c.request('GET', '/v1/clusters').then(() => undefined, (e: unknown) => e);
      c.close();
      assert.ok(err instanceof HttpError);
      assert.equal(err.status, 401);
      assert.equal(err.code, code);
    };

    it('refuses a missing, malformed, unknown, expired or revoked token', async () => {
      await refusedWith(undefined, 'missing_token');
      await refusedWith('not-a-token', 'invalid_token');
      await refusedWith(`tether_pat_${'a'.repeat(12)}.${'b'.repeat(43)}`, 'invalid_token');
      const tampered = t.adminToken.slice(0, -1) + (t.adminToken.endsWith('A') ? 'B' : 'A');
      await refusedWith(tampered, 'invalid_token');
      const short = (await t.admin.request<{ token: string; keyId: string }>('POST', '/v1/api-tokens', { name: 'short', ttlSeconds: 60 })).body;
      await t.admin.request('DELETE', `/v1/api-tokens/${short.keyId}`);
      await refusedWith(short.token, 'token_revoked');
    });

    it('refuses a token on the first request after its revocation, even once it was in use (cached)', async () => {
      const used = (await t.admin.request<{ token: string; keyId: string }>('POST', '/v1/api-tokens', { name: 'used' })).body;
      const c = as(used.token);
      try {
        for (let i = 0; i < 3; i++) assert.equal((await c.request('GET', '/v1/clusters')).status, 200);
      } finally {
        c.close();
      }
      const tampered = used.token.slice(0, -1) + (used.token.endsWith('A') ? 'B' : 'A');
      await refusedWith(tampered, 'invalid_token');
      await t.admin.request('DELETE', `/v1/api-tokens/${used.keyId}`);
      await refusedWith(used.token, 'token_revoked');
    });

    it('keeps accounts apart: another account cannot read or write this one', async () => {
      const other = await t.cp.accounts.createAccount('other');
      const o = as(other.token);
      try {
        const mine = (await queued())[0]!;
        await assert.rejects(o.request('GET', `/v1/commands/${mine.id}`), (e: HttpError) => e.status === 404);
        await assert.rejects(o.request('POST', `/v1/commands/${mine.id}/cancel`), (e: HttpError) => e.status === 404);
        await assert.rejects(o.request('POST', '/v1/commands', { target: { cluster: 'alpha' }, type: 'manifest', spec: { manifests: 'x: 1' } }), (e: HttpError) => e.status === 404);
        assert.deepEqual((await o.request<{ commands: unknown[] }>('GET', '/v1/commands')).body.commands, []);
        assert.deepEqual((await o.request<{ clusters: unknown[] }>('GET', '/v1/clusters')).body.clusters, []);
        assert.equal((await t.admin.request<CommandView>('GET', `/v1/commands/${mine.id}`)).body.state, mine.state, 'unchanged by the other account');
      } finally {
        o.close();
      }
    });
  });

  describe('bad input', () => {
    it('answers malformed JSON, wrong types, unknown fields and bad ids with 4xx JSON errors; the queue is intact', async () => {
      const before = await queued();
      const cases: [string, string, string | Buffer, number][] = [
        ['POST', '/v1/commands', '{"target":', 400],
        ['POST', '/v1/commands', '[]', 400],
        ['POST', '/v1/commands', '"string"', 400],
        ['POST', '/v1/commands', '{"target":{"cluster":"alpha"},"type":"rm -rf","spec":{}}', 400],
        ['POST', '/v1/commands', '{"target":{"cluster":"ALPHA!"},"type":"manifest","spec":{"manifests":"a"}}', 400],
        ['POST', '/v1/commands', '{"target":{"cluster":"alpha"},"type":"manifest","spec":{"manifests":"a"},"extra":1}', 400],
        ['POST', '/v1/commands', '{"target":{"cluster":"alpha"},"type":"helm","spec":{"release":"r","namespace":"n","chart":{"oci":"oci://x"},"values":{"__proto__":{"polluted":true}}}}', 400],
        ['POST', '/v1/commands', '{"target":{"cluster":"alpha"},"type":"tofu","spec":{"source":{"git":{"url":"file:///r","ref":"main","path":"../../etc"}},"stateName":"s"}}', 400],
        ['POST', '/v1/commands', '{"target":{"cluster":"alpha"},"type":"manifest","spec":{"manifests":"a"},"timeoutSeconds":-1}', 400],
        ['POST', '/v1/commands', Buffer.from([0xff, 0xfe, 0x00, 0x7b]), 400],
        ['GET', '/v1/commands/abc', '', 400],
        ['GET', '/v1/commands/99999999', '', 404],
        ['GET', '/v1/commands?limit=-5', '', 400],
        ['POST', '/v1/clusters', '{"cid":"a"}', 400],
        ['POST', '/v1/tokens', '{"cluster":"alpha","role":"root"}', 400],
        ['GET', '/v1/nope', '', 404],
      ];
      for (const [method, path, body, status] of cases) {
        const r = await raw(t, method, path, body);
        assert.equal(r.status, status, `${method} ${path} ${String(body).slice(0, 60)} → ${r.status} ${JSON.stringify(r.json)}`);
        assert.equal(typeof r.json?.error?.code, 'string', `${method} ${path}: JSON error body`);
        assert.equal(typeof r.json?.error?.message, 'string');
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution');
      assert.deepEqual((await queued()).map((c) => [c.id, c.state]), before.map((c) => [c.id, c.state]));
    });

    it('refuses an oversized body with 413 and stays up', async () => {
      const big = JSON.stringify({ target: { cluster: 'alpha' }, type: 'manifest', spec: { manifests: 'x'.repeat(200 * 1024) } });
      const r = await raw(t, 'POST', '/v1/commands', big);
      assert.equal(r.status, 413);
      assert.equal(r.json.error.code, 'payload_too_large');
      assert.equal((await t.admin.request<{ ok: boolean }>('GET', '/healthz')).body.ok, true);
    });

    it('refuses deeply nested values', async () => {
      let v: unknown = 'leaf';
      for (let i = 0; i < 40; i++) v = { a: v };
      const r = await raw(t, 'POST', '/v1/commands', JSON.stringify({ target: { cluster: 'alpha' }, type: 'helm', spec: { release: 'r', namespace: 'n', chart: { oci: 'oci://x/y' }, values: { v } } }));
      assert.equal(r.status, 400);
      assert.match(r.json.error.message, /nested deeper/);
    });
  });

  it('streams a job log over Server-Sent Events until the job ends', async function () {
    this.timeout(15_000);
    const agent = await t.agent('alpha', 'cluster-agent');
    const { id } = (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'alpha' }, type: 'manifest', spec: { manifests: 'kind: X' } })).body;
    let claim = (await agent.client.poll(0)).command!;
    while (claim.id !== id) {
      await agent.client.report(claim.id, { leaseId: claim.leaseId, outcome: 'succeeded' });
      claim = (await agent.client.poll(0)).command!;
    }
    await agent.client.logs(id, claim.leaseId, [{ stream: 'stdout', text: 'before follow' }]);
    const stream = await t.admin.stream(`/v1/commands/${id}/logs?follow=1`);
    const events: { event: string; data: string }[] = [];
    const reading = (async () => {
      for await (const ev of readSse(stream)) {
        events.push(ev);
        if (ev.event === 'end') break;
      }
      stream.destroy();
    })();
    await new Promise((r) => setTimeout(r, 100));
    await agent.client.logs(id, claim.leaseId, [{ stream: 'stderr', text: 'live line' }]);
    await agent.client.report(id, { leaseId: claim.leaseId, outcome: 'failed', error: { code: 'boom', message: 'it broke', retryable: false } });
    await reading;
    const logs = events.filter((e) => e.event === 'log').map((e) => JSON.parse(e.data).text);
    assert.deepEqual(logs, ['before follow', 'live line']);
    const end = JSON.parse(events.at(-1)!.data);
    assert.equal(end.state, 'failed');
    assert.equal(end.error.code, 'boom');
    agent.client.close();
  });

  it('a follow that hears its job end twice at once (this replica and a relayed copy) sends one end and the server stays up', async function () {
    this.timeout(15_000);
    const agent = await t.agent('alpha', 'cluster-agent');
    const { id } = (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'alpha' }, type: 'manifest', spec: { manifests: 'kind: X' } })).body;
    let claim = (await agent.client.poll(0)).command!;
    while (claim.id !== id) {
      await agent.client.report(claim.id, { leaseId: claim.leaseId, outcome: 'succeeded' });
      claim = (await agent.client.poll(0)).command!;
    }
    const stream = await t.admin.stream(`/v1/commands/${id}/logs?follow=1`);
    const events: { event: string; data: string }[] = [];
    const reading = (async () => {
      for await (const ev of readSse(stream)) events.push(ev);
    })();
    await new Promise((r) => setTimeout(r, 100));
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.prependListener('uncaughtException', onUncaught);
    try {
      // The job's end as this replica and a relay from another deliver it: twice, back to back
      // (the second arrives while the first end is still being written).
      t.cp.queue.events.emit(`cmd:${id}`, { kind: 'state', state: 'succeeded' });
      t.cp.queue.events.emit(`cmd:${id}`, { kind: 'state', state: 'succeeded' });
      await reading;
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      process.removeListener('uncaughtException', onUncaught);
    }
    assert.deepEqual(uncaught, []);
    assert.equal(events.filter((e) => e.event === 'end').length, 1);
    assert.equal((await t.admin.request('GET', '/healthz')).status, 200);
    agent.client.close();
  });

  it('serves Prometheus metrics behind the metrics token', async () => {
    const metricsToken = readFileSync(t.cp.metricsTokenFile, 'utf8').trim();
    const auth = { authorization: `Bearer ${metricsToken}` };
    const text = await new Promise<string>((resolve, reject) => {
      https.get(new URL('/metrics', t.url), { ca: t.caPem, headers: auth }, (res) => {
        let s = '';
        res.on('data', (c) => (s += c));
        res.on('end', () => resolve(s));
      }).on('error', reject);
    });
    for (const name of ['tether_commands', 'tether_submit_to_claim_seconds', 'tether_agents', 'tether_heartbeats_total', 'tether_long_polls_held', 'tether_connections', 'process_resident_memory_bytes', 'process_cpu_seconds_total', 'nodejs_heap_size_bytes']) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
    assert.match(text, /^tether_commands\{state="queued"\} \d+/m);
    // One metric alone, and a clear 404 for an unknown one.
    const one = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      https.get(`${t.url}/metrics?name=tether_long_polls_held`, { ca: t.caPem, headers: auth }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: b }));
      }).on('error', reject);
    });
    assert.equal(one.status, 200);
    assert.match(one.text, /^tether_long_polls_held \d+/m);
    assert.doesNotMatch(one.text, /tether_commands/);
    const metricsClient = new HttpClient({ baseUrl: t.url, ca: t.caPem, bearerToken: metricsToken });
    const unknown = await metricsClient.request('GET', '/metrics?name=nope', undefined, { accept: [404] }).finally(() => metricsClient.close());
    assert.equal(unknown.status, 404);
    assert.equal((unknown.body as { error: { code: string } }).error.code, 'metric_not_found');
    assert.match(text, /^tether_submit_to_claim_seconds_count \d+/m);
  });

  it('documents every route it serves in docs/api.openapi.yaml', () => {
    const doc = YAML.parse(readFileSync(join(REPO_ROOT, 'docs/api.openapi.yaml'), 'utf8'));
    assert.match(doc.openapi, /^3\./);
    const paths = Object.keys(doc.paths);
    for (const p of ['/v1/commands', '/v1/commands/{id}', '/v1/commands/{id}/cancel', '/v1/commands/{id}/logs', '/v1/clusters', '/v1/tokens', '/v1/agents', '/v1/agents/{id}/revoke', '/v1/bootstrap', '/v1/agent/poll', '/v1/agent/heartbeat', '/v1/agent/commands/{id}/result', '/v1/agent/commands/{id}/logs', '/v1/agent/certificate', '/metrics', '/v1/bundles', '/v1/bundles/{name}', '/v1/instances', '/v1/instances/{osid}', '/v1/instances/{osid}/deploy']) {
      assert.ok(paths.includes(p), `docs/api.openapi.yaml documents ${p}`);
    }
  });
});
