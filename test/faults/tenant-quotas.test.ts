/**
 * What one tenant may store (issue 11): job logs capped per command and rate-limited per agent,
 * result outputs capped, job lists bounded and without outputs, and finished commands deleted
 * after the retention. Each refusal is a 4xx naming what was too much; other tenants write on.
 */
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { ManualClock } from '../../common/clock.ts';
import { HttpError } from '../../common/http-client.ts';
import type { CommandView } from '../../common/wire.ts';
import { removeDir, startTestControlPlane, type TestControlPlane } from '../support/control-plane.ts';
import { runCli } from '../support/cli.ts';
import { onPostgres, queryRowsSync } from '../support/postgres.ts';

const MANIFEST = { manifests: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n' };

async function refusal(p: Promise<unknown>): Promise<HttpError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof HttpError, `expected a refusal, got ${err === undefined ? 'success' : String(err)}`);
  return err;
}

describe('faults: one tenant\'s storage quotas', function () {
  this.timeout(120_000);

  describe('job logs', () => {
    let t: TestControlPlane;
    before(async () => {
      t = await startTestControlPlane({ logBytesPerCommand: 4096, logBytesPerAgentPerSecond: 4096 });
      await t.createCluster('logs');
      await t.createCluster('quiet');
    });
    after(async () => {
      await t?.close();
      if (t) removeDir(t.dataDir);
    });
    const claim = async (cluster: string) => {
      const a = await t.agent(cluster, 'cluster-agent');
      const { body } = await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster }, type: 'manifest', spec: MANIFEST });
      const c = (await a.client.poll(5)).command;
      assert.equal(c?.id, body.id);
      return { a, c: c! };
    };
    const storedLines = async (id: number) => (await t.admin.request<{ lines: { stream: string; text: string }[] }>('GET', `/v1/commands/${id}/logs`)).body.lines;

    it('caps the bytes stored per command: the log ends with one marker line saying how much was dropped', async () => {
      const { a, c } = await claim('logs');
      try {
        const line = (i: number) => ({ stream: 'stdout' as const, text: `${String(i).padStart(4, '0')} ${'x'.repeat(95)}` }); // 100 bytes
        let sent = 0;
        for (let batch = 0; batch < 6; batch++) {
          // 20 lines (2,000 bytes) a batch; the quota (4 KiB/s, 32 KiB burst) lets six through.
          await a.client.logs(c.id, c.leaseId, Array.from({ length: 20 }, (_, i) => line(sent + i)));
          sent += 20;
        }
        const lines = await storedLines(c.id);
        const markers = lines.filter((l) => /log truncated/.test(l.text));
        assert.equal(markers.length, 1, 'one marker line');
        assert.equal(lines.at(-1), markers[0], 'the marker ends the log');
        assert.equal(markers[0]!.stream, 'system');
        const kept = lines.slice(0, -1);
        assert.equal(kept.length, 40, 'lines are kept in order up to the cap (40 × 100 bytes = 4,000 ≤ 4,096)');
        assert.deepEqual(kept.map((l) => l.text.slice(0, 4)), Array.from({ length: 40 }, (_, i) => String(i).padStart(4, '0')));
        assert.match(markers[0]!.text, new RegExp(`truncated at 4096 bytes: ${(sent - 40) * 100} bytes in ${sent - 40} lines dropped`));
      } finally {
        a.client.close();
      }
    });

    it('rate-limits log writes per agent (429 rate_limited); another agent writes on', async () => {
      const { a, c } = await claim('logs');
      const { a: b, c: cb } = await claim('quiet');
      try {
        const big = Array.from({ length: 400 }, () => ({ stream: 'stdout' as const, text: 'y'.repeat(100) })); // 52 KB with overhead > 32 KiB burst
        const err = await refusal(a.client.logs(c.id, c.leaseId, big));
        assert.equal(err.status, 429);
        assert.equal(err.code, 'rate_limited');
        assert.equal((await storedLines(c.id)).length, 0, 'nothing of the refused request was stored');
        await b.client.logs(cb.id, cb.leaseId, [{ stream: 'stdout', text: 'still here' }]);
        assert.deepEqual((await storedLines(cb.id)).map((l) => l.text), ['still here']);
      } finally {
        a.client.close();
        b.client.close();
      }
    });
  });

  describe('outputs and lists', () => {
    let t: TestControlPlane;
    before(async () => {
      t = await startTestControlPlane({});
      await t.createCluster('outs');
    });
    after(async () => {
      await t?.close();
      if (t) removeDir(t.dataDir);
    });

    it('refuses outputs above the cap with 413 naming the field; the attempt can still report', async () => {
      const a = await t.agent('outs', 'cluster-agent');
      try {
        const { body } = await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'outs' }, type: 'manifest', spec: MANIFEST });
        const c = (await a.client.poll(5)).command!;
        assert.equal(c.id, body.id);
        const err = await refusal(a.client.report(c.id, { leaseId: c.leaseId, outcome: 'succeeded', outputs: { a: 'z'.repeat(160 * 1024), b: 'z'.repeat(160 * 1024) } }));
        assert.equal(err.status, 413);
        assert.equal(err.code, 'outputs_too_large');
        assert.match(err.message, /^outputs is \d+ bytes/);
        await a.client.report(c.id, { leaseId: c.leaseId, outcome: 'succeeded', outputs: { small: 1 } });
      } finally {
        a.client.close();
      }
    });

    it('caps limit on GET /v1/commands (400 naming limit) and leaves outputs out of lists, not out of the job view or `tether jobs list`', async () => {
      const over = await refusal(t.admin.request('GET', '/v1/commands?limit=201'));
      assert.equal(over.status, 400);
      assert.match(over.message, /^limit: /);
      const list = (await t.admin.request<{ commands: Record<string, unknown>[] }>('GET', '/v1/commands?limit=200')).body.commands;
      assert.ok(list.length >= 1);
      for (const j of list) assert.ok(!('outputs' in j), `job ${String(j.id)} in a list carries outputs`);
      const done = list.find((j) => j.state === 'succeeded')!;
      const one = (await t.admin.request<CommandView>('GET', `/v1/commands/${String(done.id)}`)).body;
      assert.deepEqual(one.outputs, { small: 1 });
      const env = { TETHER_URL: t.url, TETHER_CA_FILE: join(t.dataDir, 'ca.crt'), TETHER_API_KEY: t.adminToken, HOME: t.dataDir };
      const cli = await runCli(['jobs', 'list'], env);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, new RegExp(`^${String(done.id)}\\s+manifest\\s+outs\\s+succeeded`, 'm'));
      const shown = await runCli(['jobs', 'show', String(done.id)], env);
      assert.equal(shown.code, 0, shown.stderr);
      assert.match(shown.stdout, /outputs\s+\{"small":1\}/);
    });
  });

  describe('retention', () => {
    const clock = new ManualClock();
    let t: TestControlPlane;
    before(async () => {
      t = await startTestControlPlane({ retentionSeconds: 3600 }, { clock });
      await t.createCluster('keep');
    });
    after(async () => {
      await t?.close();
      if (t) removeDir(t.dataDir);
    });
    const rows = (sql: string, ...params: unknown[]) => {
      // TETHER_TEST_DATABASE=postgres: the same query on the data folder's PostgreSQL database.
      if (onPostgres && params.length === 0) return queryRowsSync<Record<string, number>>(resolve(t.dataDir), sql);
      const db = new Database(join(t.dataDir, 'tether.db'), { readonly: true, fileMustExist: true });
      try {
        return db.prepare(sql).all(...params) as Record<string, number>[];
      } finally {
        db.close();
      }
    };

    it('deletes finished commands and their logs past the retention, in batches, and keeps the rest', async () => {
      const a = await t.agent('keep', 'cluster-agent');
      try {
        const finished: number[] = [];
        for (let i = 0; i < 3; i++) {
          await t.admin.request('POST', '/v1/commands', { target: { cluster: 'keep' }, type: 'manifest', spec: MANIFEST });
          const c = (await a.client.poll(5)).command!;
          await a.client.logs(c.id, c.leaseId, Array.from({ length: 500 }, (_, j) => ({ stream: 'stdout' as const, text: `line ${j}` })));
          await a.client.report(c.id, { leaseId: c.leaseId, outcome: 'succeeded' });
          finished.push(c.id);
        }
        const queued = (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'keep' }, type: 'manifest', spec: MANIFEST })).body.id;
        assert.equal((await t.cp.retention.sweep()).commands, 0, 'nothing is old enough yet');

        clock.advance(2 * 3600_000);
        const swept = await t.cp.retention.sweep();
        assert.deepEqual(swept, { commands: 3, lines: 1500 });
        for (const id of finished) assert.equal((await refusal(t.admin.request('GET', `/v1/commands/${id}`))).status, 404);
        assert.equal(rows('SELECT count(*) AS n FROM command_logs')[0]!.n, 0, 'their logs are gone');
        assert.equal((await t.admin.request<CommandView>('GET', `/v1/commands/${queued}`)).body.state, 'queued', 'an unfinished command is kept');
      } finally {
        clock.advance(-2 * 3600_000);
        a.client.close();
      }
    });

    it('`tether server --retention` takes a duration and refuses anything else', async () => {
      const r = await runCli(['server', '--data-dir', join(t.dataDir, 'never'), '--listen', '127.0.0.1:1', '--retention', 'forever'], {});
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /--retention must be a duration like 30d/);
    });
  });
});
