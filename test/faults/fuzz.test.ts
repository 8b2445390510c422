/**
 * Fuzzing every REST and agent route of a real `tether server` process with generated requests
 * (fast-check): methods, paths with hostile parameters, query strings, headers, JSON bodies
 * shaped like the real ones with random values, malformed and oversized bodies; sent anonymously,
 * with the admin token and with an agent certificate. Zero 5xx, the process stays up, RSS steady.
 * Then hostile specs: refused at submission (4xx) before anything could run.
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { HttpClient } from '../../common/http-client.ts';
import { bootstrapAgent } from '../../common/agent/agent-client.ts';
import { generateKeyPair } from '../../common/csr.ts';
import type { CommandView } from '../../common/wire.ts';
import { freePort, removeDir, spawnControlPlane, stopProcess, tempDir } from '../support/control-plane.ts';
import { faultIterations, rssKiB } from './support.ts';

const REQUESTS = faultIterations(5) * 200; // bounded: 1,000; long (50): 10,000

interface Req {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string | Buffer | undefined;
  auth: 'none' | 'admin' | 'agent';
}

const ROUTES = [
  '/healthz', '/metrics', '/v1/whoami', '/v1/clusters', '/v1/tokens', '/v1/api-tokens', '/v1/api-tokens/{s}', '/v1/commands', '/v1/commands/{id}',
  '/v1/commands/{id}/cancel', '/v1/commands/{id}/logs', '/v1/agents', '/v1/agents/{s}', '/v1/agents/{s}/revoke', '/v1/bootstrap',
  '/v1/agent/whoami', '/v1/agent/poll', '/v1/agent/heartbeat', '/v1/agent/commands/{id}/result', '/v1/agent/commands/{id}/logs',
  '/v1/agent/certificate', '/v1/agent/vpn/node', '/v1/agent/vpn/config', '/v1/clusters/{cid}/vpn', '/v1/clusters/{cid}/vpn/users',
  '/v1/clusters/{cid}/vpn/users/{s}/config', '/v1/{s}', '/{s}',
];

const hostileString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom('', '..', '../../etc/passwd', '%2e%2e%2f', '%00', '\u0000', '-1', '0', '1e309', 'NaN', '99999999999999999999', '__proto__', 'constructor', '--kubeconfig=/etc/x', 'a\nb', 'ca-aaaaaaaaaa', 'vu-aaaaaaaaaa', "' OR 1=1 --", '%', '%ZZ', '😀'),
  fc.string({ minLength: 200, maxLength: 5000 }),
);
const jsonish: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof({ depthSize: 'small' }, fc.jsonValue({ maxDepth: 3 }), hostileString, fc.dictionary(hostileString, tie('v'), { maxKeys: 5 }), fc.array(tie('v'), { maxLength: 5 })),
})).v;

/** Bodies shaped like the real ones (so they get past the first check), with random holes. */
const shaped = fc.oneof(
  fc.record({ target: fc.record({ cluster: fc.oneof(fc.constant('fuzz'), hostileString), node: fc.option(hostileString, { nil: undefined }) }, { requiredKeys: ['cluster'] }), type: fc.constantFrom('helm', 'manifest', 'tofu', 'flow', 'preflight', 'install', 'vpn-sync', 'x'), spec: jsonish, idempotencyKey: fc.option(hostileString, { nil: undefined }), timeoutSeconds: fc.option(fc.oneof(fc.integer(), fc.double()), { nil: undefined }), maxAttempts: fc.option(fc.integer(), { nil: undefined }) }, { requiredKeys: ['target', 'type', 'spec'] }),
  fc.record({ cid: hostileString, domainRoot: fc.option(hostileString, { nil: undefined }) }),
  fc.record({ cluster: hostileString, role: fc.constantFrom('node', 'cluster-agent', 'admin'), controlPlane: fc.option(fc.boolean(), { nil: undefined }), ttlSeconds: fc.option(fc.integer(), { nil: undefined }) }),
  fc.record({ token: hostileString, csr: hostileString, aid: fc.option(hostileString, { nil: undefined }), nodeName: fc.option(hostileString, { nil: undefined }) }),
  fc.record({ leaseId: hostileString, outcome: fc.constantFrom('succeeded', 'failed', 'cancelled', 'timed_out', 'x'), outputs: fc.option(jsonish, { nil: undefined }), error: fc.option(jsonish, { nil: undefined }) }),
  fc.record({ leaseId: hostileString, lines: fc.array(fc.record({ stream: fc.constantFrom('stdout', 'stderr', 'system', 'x'), text: hostileString, ts: fc.option(hostileString, { nil: undefined }) }), { maxLength: 20 }) }),
  fc.record({ version: hostileString, metrics: jsonish, running: fc.array(fc.oneof(fc.integer(), hostileString), { maxLength: 5 }), vpn: fc.option(jsonish, { nil: undefined }) }),
  jsonish,
);

const bodyArb: fc.Arbitrary<string | Buffer | undefined> = fc.oneof(
  fc.constant(undefined),
  shaped.map((v) => JSON.stringify(v) ?? 'null'),
  fc.string({ maxLength: 200 }),
  fc.constantFrom('{', '{"a":', '[[[[[[[[[[', 'null', '"x"', '{"__proto__":{"admin":true}}', '{"constructor":{"prototype":{"x":1}}}'),
  fc.constant('[' + '['.repeat(20_000) + ']'.repeat(20_000) + ']'),
  fc.integer({ min: 2 * 1024 * 1024, max: 3 * 1024 * 1024 }).map((n) => Buffer.alloc(n, 0x61)),
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
);

const reqArb: fc.Arbitrary<Req> = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'),
  route: fc.constantFrom(...ROUTES),
  id: fc.oneof(fc.constantFrom('1', '2', '0', '-1', '9007199254740993', 'abc', '1.5', '%20'), fc.nat().map(String)),
  s: hostileString.map((s) => encodeURIComponent(s)),
  cid: fc.oneof(fc.constant('fuzz'), hostileString.map((s) => encodeURIComponent(s))),
  query: fc.array(fc.tuple(fc.constantFrom('wait', 'follow', 'after', 'limit', 'before', 'state', 'cluster', 'x', '__proto__'), hostileString), { maxLength: 4 }),
  headers: fc.dictionary(fc.constantFrom('content-type', 'accept', 'last-event-id', 'x-forwarded-for', 'content-encoding', 'transfer-encoding-x', 'authorization'), fc.oneof(fc.constantFrom('application/json', 'text/event-stream', 'gzip', 'application/json; charset=utf-16', 'Bearer x', 'text/plain'), hostileString.map((s) => s.replace(/[^\x20-\x7e]/g, '').slice(0, 200)))),
  body: bodyArb,
  auth: fc.constantFrom('none', 'admin', 'agent'),
}).map((r) => {
  const path = r.route.replace('{id}', r.id).replace('{s}', r.s || 'x').replace('{cid}', r.cid || 'x');
  const qs = r.query.length ? `?${r.query.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&')}` : '';
  const headers = { ...r.headers } as Record<string, string>;
  if (r.body !== undefined && !('content-type' in headers)) headers['content-type'] = 'application/json';
  return { method: r.method, path: path + qs, headers, body: r.method === 'GET' || r.method === 'HEAD' ? undefined : r.body, auth: r.auth as Req['auth'] };
});

describe(`faults: fuzzing every route of a real control plane (${REQUESTS} requests)`, function () {
  this.timeout(120_000 + REQUESTS * 100);
  let dir: string;
  let server: Awaited<ReturnType<typeof spawnControlPlane>>;
  let admin: HttpClient;
  let caPem: string;
  let adminToken: string;
  let agentCert: { cert: string; key: string };

  before(async () => {
    dir = tempDir('tether-fuzz-');
    server = await spawnControlPlane(dir, await freePort(), ['--long-poll-seconds', '0.05']);
    caPem = readFileSync(join(dir, 'ca.crt'), 'utf8');
    adminToken = readFileSync(join(dir, 'admin-token'), 'utf8').trim();
    admin = new HttpClient({ baseUrl: server.url, ca: caPem, bearerToken: adminToken });
    await admin.request('POST', '/v1/clusters', { cid: 'fuzz' });
    await admin.request('POST', '/v1/commands', { target: { cluster: 'fuzz' }, type: 'manifest', spec: { manifests: 'kind: ConfigMap\n' }, idempotencyKey: 'fuzz-anchor' });
    const token = (await admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'fuzz', role: 'cluster-agent' })).body.token;
    const keys = generateKeyPair();
    const id = await bootstrapAgent({ url: server.url, caPem, token, keys });
    agentCert = { cert: id.certificate, key: keys.privateKeyPem };
  });
  after(async () => {
    admin?.close();
    if (server) await stopProcess(server.proc, 'SIGKILL');
    if (dir) removeDir(dir);
  });

  const send = (r: Req) =>
    new Promise<number>((resolve) => {
      const headers: Record<string, string> = { ...r.headers };
      if (r.auth === 'admin') headers.authorization = `Bearer ${adminToken}`;
      const req = https.request(new URL(r.path, server.url), {
        method: r.method, headers, ca: caPem, agent: false,
        ...(r.auth === 'agent' ? { cert: agentCert.cert, key: agentCert.key } : {}),
      }, (res) => {
        // Only the status matters; a held stream (SSE follow) is cut here.
        resolve(res.statusCode ?? 0);
        res.destroy();
      });
      req.setTimeout(15_000, () => req.destroy(new Error('no answer within 15 s')));
      req.on('error', (err) => resolve((err as NodeJS.ErrnoException).code === 'ECONNRESET' || (err as NodeJS.ErrnoException).code === 'EPIPE' ? -1 : -2));
      req.end(r.body);
    });

  it('answers every generated request with a non-5xx status, stays up, keeps its memory', async () => {
    const byStatus = new Map<number, number>();
    const bad: string[] = [];
    // Warm up, then measure.
    for (const r of fc.sample(reqArb, { numRuns: 100, seed: 1 })) await send(r);
    const rssBefore = rssKiB(server.proc.pid!);
    await fc.assert(
      fc.asyncProperty(reqArb, async (r) => {
        const status = await send(r);
        byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
        if (status >= 500 || status === -2) bad.push(`${status} ${r.method} ${r.path.slice(0, 120)} (${r.auth})`);
        return status < 500 && status !== -2;
      }),
      { numRuns: REQUESTS, endOnFailure: true },
    ).catch((err: Error) => {
      throw new Error(`${err.message.slice(0, 3000)}\nserver output tail:\n${server.output().slice(-3000)}`);
    });
    assert.equal(server.proc.exitCode, null, 'the control plane is still running');
    assert.deepEqual(bad, []);
    const h = await admin.request<{ ok: boolean }>('GET', '/healthz');
    assert.equal(h.body.ok, true);
    global.gc?.();
    const rssAfter = rssKiB(server.proc.pid!);
    console.warn(`      ${REQUESTS} requests; statuses ${JSON.stringify(Object.fromEntries([...byStatus].sort()))}; RSS ${Math.round(rssBefore / 1024)} MiB -> ${Math.round(rssAfter / 1024)} MiB`);
    assert.ok(rssAfter < rssBefore * 2 + 100 * 1024, `RSS grew from ${rssBefore} KiB to ${rssAfter} KiB`);
    assert.doesNotMatch(server.output(), /"level":(50|60)/, 'no error logged by the control plane');
  });

  it('refuses a corrupt gzip body with 400 invalid_body, not 500 (found by this fuzzer)', async () => {
    for (const auth of ['none', 'admin'] as const) {
      const status = await send({ method: 'POST', path: '/v1/commands', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: 'not gzip', auth });
      // Anonymous: refused before the body is read (401); authenticated: the body is read and refused.
      assert.equal(status, auth === 'none' ? 401 : 400, `as ${auth}`);
    }
    assert.doesNotMatch(server.output(), /incorrect header check[^\n]*request failed/);
  });

  it('refuses hostile specs at submission (4xx), leaving the queue as it was', async () => {
    const before = (await admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?limit=200')).body.commands.map((c) => c.id);
    const git = (path: string) => ({ url: 'file:///srv/repo.git', ref: 'main', path });
    const helm = (over: Record<string, unknown>) => ({ type: 'helm', spec: { release: 'web', namespace: 'web', chart: { git: git('charts/web') }, ...over } });
    let deep: unknown = 'x';
    for (let i = 0; i < 40; i++) deep = { a: deep };
    const cases: [string, { type: string; spec: unknown }][] = [
      ['option as a release name', helm({ release: '--kubeconfig=/etc/kubernetes/admin.conf' })],
      ['newline in a release name', helm({ release: 'web\n--set=x' })],
      ['option as a namespace', helm({ namespace: '--all-namespaces' })],
      ['over-long release name', helm({ release: 'a'.repeat(54) })],
      ['.. in a chart path', helm({ chart: { git: git('charts/../../etc') } })],
      ['absolute chart path', helm({ chart: { git: git('/etc') } })],
      ['option as a chart path', helm({ chart: { git: git('--post-renderer=/bin/sh') } })],
      ['option as a git ref', helm({ chart: { git: { url: 'file:///srv/repo.git', ref: '--upload-pack=touch /tmp/pwned', path: '.' } } })],
      ['ext:: git url', helm({ chart: { git: { url: 'ext::sh -c touch% /tmp/pwned', ref: 'main', path: '.' } } })],
      ['__proto__ in values', { type: 'helm', spec: JSON.parse('{"release":"web","namespace":"web","chart":{"git":{"url":"file:///srv/r.git","ref":"main","path":"."}},"values":{"__proto__":{"polluted":true}}}') }],
      ['constructor in nested values', helm({ values: { a: { constructor: { prototype: { polluted: true } } } } })],
      ['values nested too deep', helm({ values: { deep } })],
      ['.. in a tofu module path', { type: 'tofu', spec: { source: { git: git('modules/../../../') }, stateName: 'x' } }],
      ['option as a tofu var name', { type: 'tofu', spec: { source: { git: git('m') }, stateName: 'x', vars: { '-var-file=/etc/shadow': 'x' } } }],
      ['manifests over 1 MiB', { type: 'manifest', spec: { manifests: `kind: ConfigMap\ndata: {a: "${'x'.repeat(1024 * 1024)}"}` } }],
      ['unknown field', { type: 'manifest', spec: { manifests: 'kind: ConfigMap', kubeconfig: '/etc/kubernetes/admin.conf' } }],
    ];
    for (const [what, c] of cases) {
      const r = await admin.request('POST', '/v1/commands', { target: { cluster: 'fuzz' }, ...c }, { accept: [400, 413, 422] });
      assert.ok(r.status >= 400 && r.status < 500, `${what}: ${r.status}`);
    }
    const after = (await admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?limit=200')).body.commands.map((c) => c.id);
    assert.deepEqual(after.filter((id) => !before.includes(id)).length, 0, 'a hostile spec was queued');
  });
});
