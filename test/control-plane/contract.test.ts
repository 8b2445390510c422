/**
 * The API contract (issue 17): every operation of the OpenAPI document the control plane serves
 * (GET /v1/openapi.json, generated from the route table and the server's zod schemas) is driven
 * against a real control plane (real TLS, real SQLite, agents with real certificates) with a valid
 * request, valid ones generated from the JSON Schema (integer bounds, booleans), and invalid ones:
 * integers one beyond their bounds, strings one beyond maxLength, values outside an enum, the body
 * missing, each property of the wrong type, an unknown property, non-JSON, the wrong content type,
 * a body over the limit, random JSON (fast-check), bad path parameters and queries, and no or a bad
 * credential. Every answer must be a status the document lists for that operation (so never a 5xx
 * nor an undocumented status), with a body that matches the document's schema for it.
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { createCsr, generateKeyPair } from '../../common/csr.ts';
import { removeDir, startTestControlPlane, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';

type Json = Record<string, unknown>;
interface Operation {
  method: string;
  path: string;
  op: { operationId: string; security: Json[]; parameters?: { name: string; in: string; schema: Json }[]; requestBody?: { content: Record<string, { schema: Json }> }; responses: Record<string, { content?: Record<string, { schema: Json }> }> };
}
interface Answer {
  status: number;
  type: string;
  text: string;
  setCookie?: string;
}
type Cred = 'bearer' | 'session' | 'session-no-csrf' | 'metrics' | 'none' | 'bad-bearer' | 'bad-session' | 'cluster-agent' | 'node';

/** A valid request of an operation: path parameters, query, body. */
interface Example {
  params?: Record<string, string>;
  query?: Record<string, string>;
  body?: unknown;
}

describe('API contract: every operation against the OpenAPI document (real control plane)', function () {
  this.timeout(180_000);
  let t: TestControlPlane;
  let doc: { paths: Record<string, Record<string, Operation['op']>>; components: { schemas: Record<string, Json> } };
  let clusterAgent: TestAgent;
  let nodeAgent: TestAgent;
  let spareAgent: TestAgent;
  /** A console session (cookie and CSRF token) for the session routes. */
  let session: { cookie: string; csrf: string };
  const agents = new Map<string, https.Agent>();

  before(async () => {
    // Renewal at any time: the valid renewal request is made right after the agent enrolled.
    t = await startTestControlPlane({ renewWithinFraction: 1 });
    await t.createCluster('ct1');
    clusterAgent = await t.agent('ct1', 'cluster-agent');
    spareAgent = await t.agent('ct1', 'cluster-agent');
    nodeAgent = await t.agent('ct1', 'node', { nodeName: 'n1' });
    agents.set('none', new https.Agent({ ca: t.caPem }));
    for (const [name, a] of [['cluster-agent', clusterAgent], ['node', nodeAgent]] as const) {
      agents.set(name, new https.Agent({ ca: t.caPem, cert: a.identity.certificate, key: a.keys.privateKeyPem }));
    }
    const signIn = await send('POST', '/v1/sessions', 'none', { text: JSON.stringify({ token: t.adminToken }) });
    assert.equal(signIn.status, 201, signIn.text);
    session = { cookie: signIn.setCookie!.split(';')[0]!, csrf: JSON.parse(signIn.text).csrfToken };
    const served = await send('GET', '/v1/openapi.json', 'none');
    assert.equal(served.status, 200);
    doc = JSON.parse(served.text);
  });
  after(async () => {
    for (const a of agents.values()) a.destroy();
    for (const a of [clusterAgent, spareAgent, nodeAgent]) a?.client.close();
    if (t) {
      await t.close();
      removeDir(t.dataDir);
    }
  });

  function send(method: string, path: string, cred: Cred, body?: { text: string; type?: string }): Promise<Answer> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (cred === 'bearer') headers.authorization = `Bearer ${t.adminToken}`;
    if (cred === 'metrics') headers.authorization = `Bearer ${readFileSync(t.cp.metricsTokenFile, 'utf8').trim()}`;
    if (cred === 'bad-bearer') headers.authorization = 'Bearer tether_pat_nope.nope';
    if (cred === 'session') Object.assign(headers, { cookie: session.cookie, 'x-csrf-token': session.csrf });
    if (cred === 'session-no-csrf') headers.cookie = session.cookie;
    if (cred === 'bad-session') headers.cookie = `tether_session=${'x'.repeat(43)}`;
    if (body) {
      headers['content-type'] = body.type ?? 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body.text));
    }
    const agent = agents.get(cred === 'bearer' || cred === 'bad-bearer' || cred === 'metrics' || cred === 'session' || cred === 'session-no-csrf' || cred === 'bad-session' ? 'none' : cred)!;
    return new Promise((resolve, reject) => {
      const req = https.request(new URL(path, t.url), { method, headers, agent }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type'] ?? ''), text, setCookie: res.headers['set-cookie']?.[0] }));
      });
      req.setTimeout(20_000, () => req.destroy(new Error(`${method} ${path}: no answer`)));
      req.on('error', reject);
      req.end(body?.text);
    });
  }

  const ajv = new Ajv2020({ strict: false, allErrors: true });
  const inline = (s: Json): Json => JSON.parse(JSON.stringify(s).replaceAll('{"$ref":"#/components/schemas/Error"}', JSON.stringify(doc.components.schemas.Error)));

  /** Checks one answer against the document; returns a problem or undefined. */
  function check(o: Operation, what: string, a: Answer): string | undefined {
    const r = o.op.responses[String(a.status)];
    if (!r) return `${o.method.toUpperCase()} ${o.path} (${what}): status ${a.status} is not in the document (${Object.keys(o.op.responses).join(', ')}): ${a.text.slice(0, 200)}`;
    if (!r.content) return a.text.length === 0 ? undefined : `${o.path} (${what}): ${a.status} has a body the document does not describe`;
    const type = a.type.split(';')[0]!.trim();
    const c = r.content[type];
    if (!c) return `${o.method.toUpperCase()} ${o.path} (${what}): ${a.status} answered ${type}, the document lists ${Object.keys(r.content).join(', ')}`;
    if (type !== 'application/json') return undefined;
    const validate = ajv.compile(inline(c.schema));
    if (!validate(JSON.parse(a.text))) return `${o.method.toUpperCase()} ${o.path} (${what}): the ${a.status} body does not match the document: ${ajv.errorsText(validate.errors)}: ${a.text.slice(0, 300)}`;
    return undefined;
  }

  function operations(): Operation[] {
    const out: Operation[] = [];
    for (const [path, ops] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(ops)) out.push({ method, path, op });
    return out;
  }

  const credOf = (o: Operation): Cred => (JSON.stringify(o.op.security).includes('metrics') ? 'metrics' : JSON.stringify(o.op.security).includes('bearer') ? 'bearer' : JSON.stringify(o.op.security).includes('session') ? 'session' : JSON.stringify(o.op.security).includes('mtls') ? (o.op.operationId.includes('Vpn') ? 'node' : 'cluster-agent') : 'none');
  const url = (o: Operation, e: Example) => {
    const p = o.path.replace(/\{([^}]+)\}/g, (_m, n: string) => encodeURIComponent(e.params?.[n] ?? 'missing'));
    const q = new URLSearchParams(e.query ?? {}).toString();
    return q ? `${p}?${q}` : p;
  };

  /** Valid requests; some are built when needed (a fresh token, a claimed command). */
  async function example(o: Operation): Promise<Example> {
    const admin = async <T>(method: string, path: string, body?: unknown) => (await t.admin.request<T>(method, path, body)).body;
    const command = () => admin<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'ct1' }, type: 'manifest', spec: { manifests: 'kind: X' } });
    const key = `${o.method} ${o.path}`;
    switch (key) {
      case 'post /v1/sessions':
        return { body: { token: t.adminToken } };
      case 'post /v1/clusters':
        return { body: { cid: `c${Math.random().toString(36).slice(2, 9)}` } };
      case 'post /v1/tokens':
        return { body: { cluster: 'ct1', role: 'node', controlPlane: false, ttlSeconds: 600 } };
      case 'post /v1/api-tokens':
        return { body: { name: 'contract' } };
      case 'delete /v1/api-tokens/{keyId}':
        return { params: { keyId: (await admin<{ keyId: string }>('POST', '/v1/api-tokens', { name: 'to-revoke' })).keyId } };
      case 'post /v1/commands':
        return { body: { target: { cluster: 'ct1' }, type: 'manifest', spec: { manifests: 'kind: X' }, maxAttempts: 2 } };
      case 'get /v1/commands':
        return { query: { cluster: 'ct1', state: 'queued', limit: '5' } };
      case 'get /v1/commands/{id}':
      case 'post /v1/commands/{id}/cancel':
        return { params: { id: String((await command()).id) } };
      case 'get /v1/commands/{id}/logs':
        return { params: { id: String((await command()).id) }, query: { after: '0' } };
      case 'get /v1/agents':
        return { query: { cluster: 'ct1' } };
      case 'get /v1/agents/{id}':
        return { params: { id: clusterAgent.identity.agentId } };
      case 'post /v1/agents/{id}/revoke':
        return { params: { id: spareAgent.identity.agentId } };
      case 'post /v1/bundles':
        return { body: { name: 'b1', url: 'https://127.0.0.1:9/none.git', ref: 'main' } };
      case 'get /v1/bundles/{name}':
      case 'delete /v1/bundles/{name}':
        return { params: { name: 'b1' } };
      case 'post /v1/instances':
        return { body: { bundle: 'b1', cluster: 'ct1', inputs: { replicas: 2 } } };
      case 'get /v1/instances':
        return { query: { cluster: 'ct1' } };
      case 'get /v1/instances/{osid}':
      case 'delete /v1/instances/{osid}':
        return { params: { osid: 'web-abcde' } };
      case 'post /v1/instances/{osid}/diff':
      case 'post /v1/instances/{osid}/sync':
        return { params: { osid: 'web-abcde' }, body: { commit: '0123456789abcdef0123456789abcdef01234567', inputs: { replicas: 2 } } };
      case 'get /v1/instances/{osid}/versions':
        return { params: { osid: 'web-abcde' } };
      case 'get /v1/instances/{osid}/versions/{version}':
        return { params: { osid: 'web-abcde', version: '1' } };
      case 'post /v1/instances/{osid}/deploy':
        return { params: { osid: 'web-abcde' }, body: { inputs: {} } };
      case 'patch /v1/instances/{osid}':
        return { params: { osid: 'web-abcde' }, body: { driftCheck: { intervalSeconds: 300 }, autoSync: true } };
      case 'get /v1/clusters/{cid}/vpn':
        return { params: { cid: 'ct1' } };
      case 'post /v1/clusters/{cid}/vpn/users':
        return { params: { cid: 'ct1' }, body: { name: `u${Math.random().toString(36).slice(2, 8)}` } };
      case 'get /v1/clusters/{cid}/vpn/users/{uid}/config':
      case 'delete /v1/clusters/{cid}/vpn/users/{uid}': {
        const u = await admin<{ user: { id: string } }>('POST', '/v1/clusters/ct1/vpn/users', { name: `v${Math.random().toString(36).slice(2, 8)}` });
        return { params: { cid: 'ct1', uid: u.user.id } };
      }
      case 'post /v1/bootstrap': {
        const token = await t.bootstrapToken('ct1', 'cluster-agent');
        return { body: { token, csr: createCsr(generateKeyPair(), 'contract') } };
      }
      case 'get /v1/agent/poll':
        return { query: { wait: '0' } };
      case 'post /v1/agent/heartbeat':
        return { body: { version: '1.0.0', metrics: { cpuPercent: 1 }, running: [] } };
      case 'post /v1/agent/commands/{id}/result':
      case 'post /v1/agent/commands/{id}/logs': {
        await command();
        const claimed = (await clusterAgent.client.poll(0)).command;
        assert.ok(claimed, 'a command to report on');
        const body = key.endsWith('result') ? { leaseId: claimed.leaseId, outcome: 'succeeded', outputs: { n: 1 } } : { leaseId: claimed.leaseId, lines: [{ stream: 'stdout', text: 'hello' }] };
        // A result also claims the next command with next=N: 0 answers at once (nothing is queued).
        return { params: { id: String(claimed.id) }, ...(key.endsWith('result') ? { query: { next: '0' } } : {}), body };
      }
      case 'post /v1/agent/certificate':
        return { body: { csr: createCsr(clusterAgent.keys, 'renew') } };
      case 'put /v1/agent/vpn/node':
        return { body: { wg0: { publicKey: `${'A'.repeat(42)}A=`, listenPort: 51820 }, wg1: { publicKey: `${'B'.repeat(42)}E=`, listenPort: 51821 }, endpointHost: '127.0.0.1' } };
      default:
        assert.ok(!o.op.requestBody && !(o.op.parameters ?? []).some((p) => p.in === 'path'), `no example for ${key}`);
        return {};
    }
  }

  /** Values of the wrong JSON type for a schema. */
  function wrongTypes(s: Json | undefined): unknown[] {
    const type = s?.type;
    if (type === 'string') return [12345, null];
    if (type === 'integer') return ['7', 1.5, null];
    if (type === 'number') return ['7', null];
    if (type === 'boolean') return ['yes'];
    if (type === 'array') return ['x', { a: 1 }];
    if (type === 'object') return ['x', [1]];
    return [];
  }

  /** Values generated from a property's JSON Schema: valid ones and ones it refuses. */
  function generated(s: Json): { valid: unknown[]; invalid: unknown[] } {
    const valid: unknown[] = [];
    const invalid: unknown[] = [];
    const n = (k: string) => (typeof s[k] === 'number' ? (s[k] as number) : undefined);
    if (s.type === 'integer') {
      const min = n('minimum') ?? (n('exclusiveMinimum') !== undefined ? n('exclusiveMinimum')! + 1 : undefined);
      const max = n('maximum') ?? (n('exclusiveMaximum') !== undefined ? n('exclusiveMaximum')! - 1 : undefined);
      if (min !== undefined) valid.push(min), invalid.push(min - 1);
      if (max !== undefined && max < Number.MAX_SAFE_INTEGER) valid.push(max), invalid.push(max + 1);
    }
    if (s.type === 'string' && n('maxLength') !== undefined) invalid.push('a'.repeat(n('maxLength')! + 1));
    if (s.type === 'string' && n('minLength') !== undefined && n('minLength')! > 0) invalid.push('');
    if (Array.isArray(s.enum)) invalid.push('zz-not-in-the-enum');
    if (s.type === 'boolean') valid.push(true, false);
    return { valid, invalid };
  }

  it('serves a document with every route of the table', () => {
    const ops = operations();
    assert.ok(ops.length >= 35, `${ops.length} operations`);
    for (const o of ops) {
      assert.ok(o.op.responses['503'], `${o.path}: 503 documented`);
      if (credOf(o) !== 'none') assert.ok(o.op.responses['401'], `${o.method} ${o.path}: 401 documented`);
      if (o.op.requestBody) for (const s of ['400', '413', '415']) assert.ok(o.op.responses[s], `${o.method} ${o.path}: ${s} documented`);
    }
  });

  it('answers every valid and generated invalid request with a documented status and body', async () => {
    const problems: string[] = [];
    let requests = 0;
    const validStatuses: string[] = [];
    const expect = async (o: Operation, what: string, cred: Cred, e: Example, body?: { text: string; type?: string }, mustBe?: (s: number) => boolean) => {
      const a = await send(o.method.toUpperCase(), url(o, e), cred, body);
      requests++;
      if (what === 'valid') validStatuses.push(`${a.status} ${o.method.toUpperCase()} ${o.path}`);
      const p = check(o, what, a);
      if (p) problems.push(p);
      else if (mustBe && !mustBe(a.status)) problems.push(`${o.method.toUpperCase()} ${o.path} (${what}): answered ${a.status}: ${a.text.slice(0, 200)}`);
    };
    const json = (v: unknown) => ({ text: JSON.stringify(v) });
    const is4xx = (s: number) => s >= 400 && s < 500;
    // Revocations last: they would make later requests of the same credential fail (signing out last of all).
    const order = (o: Operation) => (o.path === '/v1/sessions/current' && o.method === 'delete' ? 2 : /revoke|delete/.test(`${o.method} ${o.path}`) ? 1 : 0);
    for (const o of operations().sort((a, b) => order(a) - order(b))) {
      const cred = credOf(o);
      const bodySchema = o.op.requestBody?.content['application/json']?.schema as { properties?: Record<string, Json>; required?: string[] } | undefined;

      // A valid request succeeds, except where the example refers to what cannot exist here (a
      // bundle from a git URL nothing serves, and so its instances): a documented refusal.
      const e = await example(o);
      const refused = /bundles|instances/.test(o.path) && o.method !== 'get' ? true : /\/v1\/(bundles|instances)\/\{/.test(o.path);
      await expect(o, 'valid', cred, e, e.body === undefined ? undefined : json(e.body), (s) => (refused ? s >= 400 && s < 500 : s < 300));

      // Every bearer route takes the console's session cookie instead; a write made with it needs the CSRF token.
      if (cred === 'bearer') {
        const fresh = await example(o);
        await expect(o, 'valid with the session cookie', 'session', fresh, fresh.body === undefined ? undefined : json(fresh.body), (s) => (refused ? s >= 400 && s < 500 : s < 300));
        if (o.method !== 'get') await expect(o, 'session cookie without CSRF token', 'session-no-csrf', e, e.body === undefined ? undefined : json(e.body), (s) => s === 403);
      }

      // Credentials.
      if (cred === 'bearer' || cred === 'metrics' || cred === 'session') {
        await expect(o, 'no token', 'none', e, e.body === undefined ? undefined : json(e.body), (s) => s === 401);
        await expect(o, 'bad token', cred === 'session' ? 'bad-session' : 'bad-bearer', e, e.body === undefined ? undefined : json(e.body), (s) => s === 401);
      } else if (cred !== 'none') {
        await expect(o, 'no client certificate', 'none', e, e.body === undefined ? undefined : json(e.body), (s) => s === 401);
      }

      // Path parameters and query values that fail validation.
      for (const p of o.op.parameters ?? []) {
        const bad = p.in === 'path' ? ['!!', 'x'.repeat(300)] : ['-1', '!!', 'x'.repeat(300)];
        for (const v of bad) {
          const e2: Example = p.in === 'path' ? { ...e, params: { ...e.params, [p.name]: v } } : { ...e, query: { ...e.query, [p.name]: v } };
          await expect(o, `${p.in} ${p.name}=${v.slice(0, 10)}`, cred, e2, e.body === undefined ? undefined : json(e.body), (s) => s < 500);
        }
      }

      if (!bodySchema) continue;
      const valid = e.body as Json;
      // Bodies: empty object, each required property missing, each property of a wrong type, an unknown property.
      await expect(o, 'empty object', cred, e, json({}), (s) => s < 500);
      for (const name of bodySchema.required ?? []) {
        const { [name]: _drop, ...rest } = valid;
        await expect(o, `without ${name}`, cred, e, json(rest), is4xx);
      }
      for (const [name, s] of Object.entries(bodySchema.properties ?? {})) {
        for (const w of wrongTypes(s)) await expect(o, `${name}=${JSON.stringify(w)}`, cred, e, json({ ...valid, [name]: w }), is4xx);
      }
      await expect(o, 'unknown property', cred, e, json({ ...valid, zzUnknown: 1 }), is4xx);
      // From each top-level property's JSON Schema: the bounds of integers (valid at min and max,
      // refused one beyond), strings one longer than maxLength, a value outside an enum, and the
      // valid booleans; the valid ones on a fresh example (a new cluster id, a new claim).
      for (const [name, ps] of Object.entries(bodySchema.properties ?? {})) {
        const g = generated(ps);
        for (const v of g.valid) {
          const fresh = await example(o);
          await expect(o, `${name}=${JSON.stringify(v)}`, cred, fresh, json({ ...(fresh.body as Json), [name]: v }), (st) => (refused ? st >= 400 && st < 500 : st < 300));
        }
        for (const v of g.invalid) await expect(o, `${name}=${JSON.stringify(v).slice(0, 20)}`, cred, e, json({ ...valid, [name]: v }), is4xx);
      }
      // Not JSON, not declared as JSON, and a body larger than the limit.
      await expect(o, 'not JSON', cred, e, { text: '{"a":' }, is4xx);
      await expect(o, 'text/plain', cred, e, { text: JSON.stringify(valid), type: 'text/plain' }, is4xx);
      await expect(o, 'too large', cred, e, json({ pad: 'x'.repeat(3 * 1024 * 1024) }), is4xx);
      // Random JSON documents (deterministic: a fixed seed).
      for (const v of fc.sample(fc.jsonValue({ maxDepth: 3 }), { numRuns: 8, seed: 17 })) await expect(o, `random ${JSON.stringify(v).slice(0, 30)}`, cred, e, json(v), is4xx);
    }
    assert.deepEqual(problems, [], `${problems.length} of ${requests} answers break the contract:\n${problems.join('\n')}\n(valid requests: ${validStatuses.join(', ')})`);
    assert.ok(requests > 400, `${requests} requests`);
  });
});
