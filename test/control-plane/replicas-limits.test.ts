/**
 * What replicas on one PostgreSQL must count together (issue 15): failed bootstraps and sign-ins
 * per address, an agent's log bytes, and scheduled drift checks (submitted once, whichever
 * replica ticks). Two real control planes on one real PostgreSQL, real TLS; the requests alternate
 * between them. The same limits on one SQLite server (one process, counted in memory) as the
 * reference: the replicas must refuse exactly where it does.
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient, bootstrapAgent } from '../../common/agent/agent-client.ts';
import { ManualClock } from '../../common/clock.ts';
import { createCsr, generateKeyPair } from '../../common/csr.ts';
import { silentLogger } from '../../common/logger.ts';
import type { HttpError } from '../../common/http-client.ts';
import type { CommandView } from '../../common/wire.ts';
import type { TetherError } from '../../common/errors.ts';
import { startControlPlane, type ControlPlane } from '../../control-plane/app.ts';
import { REPO_ROOT, removeDir, tempDir } from '../support/control-plane.ts';
import { freshDatabase, onPostgres } from '../support/postgres.ts';
import { readTree } from '../support/bundles.ts';
import { bareRepo } from '../cluster-agent/support.ts';

const LIMIT = 4;
const DAY = 86400_000;
const LOG_RATE = 1024; // bytes/s, the least the config takes: a window of 8 s holds 8192 bytes

interface Reply {
  status: number;
  json: any;
}

function call(cp: ControlPlane, method: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const text = JSON.stringify(body);
    const h = { accept: 'application/json', 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers };
    const req = https.request(new URL(path, cp.url), { method, headers: h, ca: cp.ca.caCertPem, agent: false }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode!, json: data ? JSON.parse(data) : undefined }));
    });
    req.on('error', reject);
    req.end(text);
  });
}

for (const mode of ['two replicas on one PostgreSQL', 'one server on SQLite'] as const) {
  const replicated = mode === 'two replicas on one PostgreSQL';
  describe(`replicas: limits counted once (${mode})`, function () {
    this.timeout(120_000);
    before(function () {
      // Each runs once per CI run: the PostgreSQL replicas start their own PostgreSQL in the first
      // pass (as replicas.test.ts does), the SQLite server is not what the PostgreSQL pass tests.
      if (!onPostgres) return;
      process.stdout.write('      (in the first pass already: not repeated on PostgreSQL)\n');
      this.skip();
    });
    const kek = randomBytes(32).toString('base64');
    const clock = new ManualClock(Date.now());
    const dirs: string[] = [];
    const clients: AgentClient[] = [];
    let a: ControlPlane;
    let b: ControlPlane;
    let token: string;
    let dir: string;
    const agents = new Map<string, { id: Awaited<ReturnType<typeof bootstrapAgent>>; keys: ReturnType<typeof generateKeyPair> }>();
    const clientOf = (cid: string, cp: ControlPlane) => {
      const { id, keys } = agents.get(cid)!;
      const c = new AgentClient(cp.url, { certPem: id.certificate, keyPem: keys.privateKeyPem, caPem: cp.ca.caCertPem });
      clients.push(c);
      return c;
    };
    const admin = (cp: ControlPlane, method: string, path: string, body?: unknown) => call(cp, method, path, body ?? {}, { authorization: `Bearer ${token}` });

    const start = (databaseUrl: string | undefined) => {
      const dataDir = tempDir('tether-limits-');
      dirs.push(dataDir);
      return startControlPlane(
        {
          host: '127.0.0.1',
          port: 0,
          dataDir,
          allowFileRoots: [dir],
          bootstrapFailuresPerMinute: LIMIT,
          loginFailuresPerMinute: LIMIT,
          logBytesPerAgentPerSecond: LOG_RATE,
          ...(databaseUrl ? { databaseUrl, caKeyEncryptionKey: kek } : {}),
        },
        { log: silentLogger(), clock, driftScheduler: false, reaper: false },
      );
    };

    before(async () => {
      dir = tempDir('tether-limits-src-');
      const url = replicated ? await freshDatabase() : undefined;
      a = await start(url);
      b = replicated ? await start(url) : a;
      token = readFileSync(a.adminTokenFile, 'utf8').trim();
      // The agents first: once the bootstrap limit is reached, this address bootstraps no more.
      // Those that renew got their 30-day certificates 20 days ago (renewal opened 5 days ago).
      for (const cid of ['lim1', 'drf1', 'ren1', 'ren2']) {
        assert.equal((await admin(a, 'POST', '/v1/clusters', { cid })).status, 201);
        const bt = (await admin(b, 'POST', '/v1/tokens', { cluster: cid, role: 'cluster-agent' })).json.token as string;
        const keys = generateKeyPair();
        const old = cid.startsWith('ren');
        if (old) clock.advance(-20 * DAY);
        agents.set(cid, { id: await bootstrapAgent({ url: a.url, caPem: a.ca.caCertPem, token: bt, keys }).finally(() => old && clock.advance(20 * DAY)), keys });
      }
    });
    after(async () => {
      for (const c of clients.splice(0)) c.close();
      await a?.close();
      if (b !== a) await b?.close();
      for (const d of dirs.splice(0)) removeDir(d);
      if (dir) removeDir(dir);
    });

    it('certificate renewals: one at a time per agent across replicas, and a renewal on A closes the window on B', async () => {
      const now = clock.now();
      const csr = (cid: string) => createCsr(agents.get(cid)!.keys, 'renew');
      const tooEarly = (e: TetherError) => e.status === 429 && e.code === 'renewal_too_early';
      // B sees the first certificate's window while it is closed (and remembers it); A renews once
      // it is open; B is asked next with the old certificate: A's new one is what counts.
      const [onA, onB] = [clientOf('ren1', a), clientOf('ren1', b)];
      clock.set(now - 19 * DAY);
      await assert.rejects(onB.renew(csr('ren1')), tooEarly);
      clock.set(now);
      await onA.renew(csr('ren1'));
      await assert.rejects(onB.renew(csr('ren1')), tooEarly, 'one certificate per window, whichever replica is asked');
      // Two at once, on A and on B: one is issued, the other refused (in progress, or too early after it).
      const [r1, r2] = await Promise.allSettled([clientOf('ren2', a).renew(csr('ren2')), clientOf('ren2', b).renew(csr('ren2'))]);
      const issued = [r1, r2].filter((r) => r.status === 'fulfilled');
      assert.equal(issued.length, 1, JSON.stringify([r1, r2].map((r) => (r.status === 'rejected' ? (r.reason as TetherError).code : 'issued'))));
      const refusedOne = [r1, r2].find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.ok(['renewal_in_progress', 'renewal_too_early'].includes((refusedOne.reason as TetherError).code), String(refusedOne.reason));
      const certs = await a.db.selectFrom('certificates').select('serial').where('agent_id', 'in', [agents.get('ren1')!.id.agentId, agents.get('ren2')!.id.agentId]).execute();
      assert.equal(certs.length, 4, 'two agents, each its first certificate and one renewal');
      assert.deepEqual((await a.db.selectFrom('rate_limits').select('key').where('key', 'like', 'renew:%').execute()), [], 'the renewal locks are freed');
    });

    it(`failed bootstraps from one address, alternating between the replicas, are refused 429 from the ${LIMIT + 1}th on, wherever it lands`, async () => {
      const order = [a, b, a, b];
      for (const [i, cp] of order.entries()) {
        const r = await call(cp, 'POST', '/v1/bootstrap', { token: `tether_bt_${'x'.repeat(20)}` });
        assert.ok(r.status >= 400 && r.status < 500 && r.status !== 429, `failure ${i + 1}: ${r.status} ${JSON.stringify(r.json)}`);
      }
      for (const cp of [b, a]) {
        const r = await call(cp, 'POST', '/v1/bootstrap', { token: `tether_bt_${'x'.repeat(20)}` });
        assert.equal(r.status, 429, JSON.stringify(r.json));
        assert.equal(r.json.error.code, 'rate_limited');
      }
    });

    it(`failed sign-ins likewise: the ${LIMIT + 1}th is refused 429 on either replica, before the body is read`, async () => {
      for (const [i, cp] of [b, a, b, a].entries()) {
        const r = await call(cp, 'POST', '/v1/sessions', { token: 'tether_pat_not-a-token' });
        assert.equal(r.status, 401, `failure ${i + 1}: ${JSON.stringify(r.json)}`);
      }
      for (const cp of [a, b]) {
        const r = await call(cp, 'POST', '/v1/sessions', { token });
        assert.equal(r.status, 429, `even the right token: ${JSON.stringify(r.json)}`);
      }
    });

    it('an agent\'s log bytes through A and B count against one rate: two batches on A fit, a third on B is refused', async () => {
      const onA = clientOf('lim1', a);
      const onB = clientOf('lim1', b);
      const job = (await admin(a, 'POST', '/v1/commands', { target: { cluster: 'lim1' }, type: 'manifest', spec: { manifests: 'kind: X' } })).json as CommandView;
      const { command } = await onA.poll(0);
      assert.equal(command?.id, job.id);
      // 3 lines of 1300 bytes: 3996 bytes counted (32 a line more); two fit in 8192, three do not
      // (in memory the bucket refills 1024 bytes a second: the third would need 3.7 s more).
      const batch = [0, 1, 2].map(() => ({ stream: 'stdout' as const, text: 'x'.repeat(1300) }));
      await onA.logs(job.id, command.leaseId, batch);
      await onA.logs(job.id, command.leaseId, batch);
      await assert.rejects(onB.logs(job.id, command.leaseId, batch), (e: HttpError) => e.status === 429 && e.code === 'rate_limited');
      await assert.rejects(onA.logs(job.id, command.leaseId, batch), (e: HttpError) => e.status === 429 && e.code === 'rate_limited');
      // A refused batch took nothing: what is left (8192 - 7992) still takes a small one, on B.
      await onB.logs(job.id, command.leaseId, [{ stream: 'stdout', text: 'y'.repeat(100) }]);
      const lines = (await admin(a, 'GET', `/v1/commands/${job.id}/logs`)).json.lines as { text: string }[];
      assert.equal(lines.filter((l) => l.text.startsWith('xxx')).length, 6);
      assert.equal(lines.filter((l) => l.text.startsWith('yyy')).length, 1);
      await onA.report(job.id, { leaseId: command.leaseId, outcome: 'succeeded' });
    });

    it('two replicas ticking their drift schedulers at once submit exactly one check per due instance', async () => {
      const repo = bareRepo(dir, 'stacks');
      repo.commit(readTree(join(REPO_ROOT, 'bundles/webapp'), 'webapp'));
      assert.equal((await admin(a, 'POST', '/v1/bundles', { name: 'webapp', url: repo.url, ref: 'main', path: 'webapp' })).status, 201);
      const agent = clientOf('drf1', a);
      const osids: string[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await admin(i % 2 ? b : a, 'POST', '/v1/instances', { bundle: 'webapp', cluster: 'drf1', inputs: {} });
        assert.equal(r.status, 202, JSON.stringify(r.json));
        osids.push(r.json.osid);
      }
      for (let i = 0; i < osids.length; i++) {
        const { command } = await agent.poll(0);
        assert.ok(command, 'a deploy to run');
        await agent.report(command.id, { leaseId: command.leaseId, outcome: 'succeeded', outputs: { steps: [] } });
      }
      const diffs = async () => ((await admin(a, 'GET', '/v1/commands?limit=200')).json.commands as CommandView[]).filter((j) => JSON.stringify(j.spec).includes('"type":"diff"'));
      // Placed (by both at once, as replicas do), then both tick at once when all are due.
      await Promise.all([a.drift.tick(), b.drift.tick()]);
      assert.equal((await diffs()).length, 0, 'placed, not due yet');
      const due = await a.db.selectFrom('instances').select('next_check_at').where('osid', 'in', osids).execute();
      assert.ok(due.every((d) => d.next_check_at !== null));
      clock.set(Math.max(...due.map((d) => d.next_check_at!)) + 1);
      await Promise.all([a.drift.tick(), b.drift.tick()]);
      const submitted = await diffs();
      assert.equal(submitted.length, osids.length, `one check per due instance, not ${submitted.length} for ${osids.length}`);
      for (const osid of osids) assert.equal(submitted.filter((j) => JSON.stringify(j).includes(osid)).length, 1, `one check of ${osid}`);
      // And again: nothing more until the next due times.
      await Promise.all([a.drift.tick(), b.drift.tick()]);
      assert.equal((await diffs()).length, osids.length);
    });

    it('retention deletes the windows closed for an hour (PostgreSQL: the limits\' table; SQLite keeps them in memory)', async () => {
      const rows = () => a.db.selectFrom('rate_limits').select('key').execute();
      if (!replicated) {
        assert.deepEqual(await rows(), [], 'nothing counted in the database on SQLite');
        return;
      }
      assert.deepEqual((await rows()).map((r) => r.key.split(':')[0]).sort(), ['bootstrap', 'log', 'login']);
      await a.retention.sweep();
      assert.equal((await rows()).length, 3, 'still open');
      clock.advance(3600_000 + 61_000);
      await a.retention.sweep();
      assert.deepEqual(await rows(), []);
    });
  });
}
