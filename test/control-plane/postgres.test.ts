/**
 * The control plane's storage on PostgreSQL (issue 15): opening it from a URL, the migrations
 * (once, under the advisory lock, when replicas start together), the URL's password kept out of
 * the logs. Runs in every mocha run, on the real PostgreSQL of test/support/postgres.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { freshDatabase, requirePostgres } from '../support/postgres.ts';
import { openPostgres, redactDatabaseUrl } from '../../control-plane/db/postgres.ts';
import { migrate } from '../../control-plane/db/database.ts';
import { freePort, nodeArgs, removeDir, spawnControlPlane, startTestControlPlane, stopProcess, tempDir } from '../support/control-plane.ts';
import { sql } from 'kysely';
import pg from 'pg';
import { HttpError } from '../../common/http-client.ts';

describe('PostgreSQL storage', function () {
  this.timeout(120_000);
  before(function () {
    requirePostgres(this);
  });

  it('three replicas migrating one empty database at once migrate it once; every table is there, epoch milliseconds fit', async () => {
    const url = await freshDatabase({ empty: true });
    const dbs = [0, 1, 2].map(() => openPostgres({ url, poolSize: 2, statementTimeoutMs: 60_000 }).db);
    try {
      const applied = await Promise.all(dbs.map((db) => migrate(db)));
      const counts = applied.map((a) => a.length).sort();
      assert.deepEqual(counts.slice(0, 2), [0, 0], `only one replica applies migrations: ${JSON.stringify(applied)}`);
      assert.ok(counts[2]! >= 7, `one replica applied them all: ${JSON.stringify(applied)}`);
      const rows = await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(dbs[0]!);
      assert.deepEqual(rows.rows.map((r) => r.name), applied.find((a) => a.length > 0));
      // A second start finds nothing to do.
      assert.deepEqual(await migrate(dbs[1]!), []);
      // Epoch milliseconds (beyond 32 bits) are stored as bigint and read back as numbers.
      const db = dbs[0]!;
      const now = Date.now();
      await db.insertInto('accounts').values({ aid: 'a1', name: 'n', created_at: now }).execute();
      await db.insertInto('clusters').values({ aid: 'a1', cid: 'c1', domain: 'd', created_at: now }).execute();
      const c = await db
        .insertInto('commands')
        .values({ aid: 'a1', cid: 'c1', nid: null, type: 'install', spec: '{}', state: 'queued', idempotency_key: null, timeout_seconds: 60, max_attempts: 1, attempts: 0, created_at: now })
        .returningAll()
        .executeTakeFirstOrThrow();
      assert.equal(c.created_at, now);
      assert.equal(typeof c.id, 'number');
      const types = await sql<{ column_name: string; data_type: string }>`SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'commands' AND column_name IN ('id', 'created_at', 'attempts')`.execute(db);
      assert.deepEqual(Object.fromEntries(types.rows.map((r) => [r.column_name, r.data_type])), { id: 'bigint', created_at: 'bigint', attempts: 'bigint' });
    } finally {
      await Promise.all(dbs.map((db) => db.destroy()));
    }
  });

  it('redactDatabaseUrl hides the password and nothing else', () => {
    assert.equal(redactDatabaseUrl('postgres://tether:s3cret@db.example:5432/tether?sslmode=require'), 'postgres://tether:***@db.example:5432/tether?sslmode=require');
    assert.equal(redactDatabaseUrl('postgres://db.example/tether'), 'postgres://db.example/tether');
    assert.equal(redactDatabaseUrl('postgres://u:p@[not a url'), '<unparsable database URL>');
  });

  it('tether server --database URL: starts on PostgreSQL, says so with the password redacted, never logs the password', async () => {
    const url = await freshDatabase({ empty: true });
    const password = new URL(url).password;
    assert.ok(password.length >= 8);
    const dir = tempDir();
    const port = await freePort();
    const s = await spawnControlPlane(dir, port, ['--database', url]);
    try {
      assert.match(s.output(), /storage: PostgreSQL/);
      assert.match(s.output(), /postgres:\/\/tether:\*\*\*@127\.0\.0\.1/);
      assert.ok(!s.output().includes(password), 'the password is in the server output');
    } finally {
      await stopProcess(s.proc);
      removeDir(dir);
    }
    assert.ok(!s.output().includes(password), 'the password is in the server output');
  });

  it('refuses a database URL that is not postgres:// with a usage error (exit 2), before opening anything, without echoing it', () => {
    const dir = tempDir();
    try {
      const [cmd, args] = nodeArgs('control-plane/cli/main.ts', ['server', '--data-dir', dir, '--listen', '127.0.0.1:0', '--database', 'mysql://u:hunter22@h/db']);
      const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /must be a postgres:\/\/ or postgresql:\/\/ URL/);
      assert.ok(!r.stderr.includes('hunter22'));
    } finally {
      removeDir(dir);
    }
  });

  it('tether backup and tether restore on PostgreSQL: a clear usage error (exit 2) naming pg_dump, nothing written', () => {
    const dir = tempDir();
    try {
      const run = (args: string[], env: NodeJS.ProcessEnv = {}) => {
        const [cmd, a] = nodeArgs('control-plane/cli/main.ts', args);
        return spawnSync(cmd, a, { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
      };
      const b = run(['backup', '--data-dir', dir, '--to', `${dir}/b.tar.gz`], { TETHER_DATABASE_URL: 'postgres://u:pw1234@127.0.0.1:1/db' });
      assert.equal(b.status, 2, b.stderr);
      assert.match(b.stderr, /PostgreSQL.*pg_dump/);
      assert.ok(!b.stderr.includes('pw1234'));
      const r = run(['restore', '--from', `${dir}/b.tar.gz`, '--data-dir', dir, '--database', 'postgres://u:pw1234@127.0.0.1:1/db']);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /PostgreSQL.*pg_restore/);
      assert.deepEqual(readdirSync(dir), []);
    } finally {
      removeDir(dir);
    }
  });

  it("on PostgreSQL the control plane keeps the database's time, not its host's: a database clock two minutes ahead dates jobs and claims two minutes ahead", async () => {
    const url = await freshDatabase();
    // The database's clock, two minutes ahead (less than the certificates' allowance for skew): clock_timestamp() resolved through a schema searched before pg_catalog.
    const { db } = openPostgres({ url, poolSize: 1, statementTimeoutMs: 10_000 });
    try {
      await sql`CREATE SCHEMA skew`.execute(db);
      await sql`CREATE FUNCTION skew.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS $$ SELECT pg_catalog.clock_timestamp() + interval '2 minutes' $$`.execute(db);
      await sql.raw(`ALTER DATABASE ${new URL(url).pathname.slice(1)} SET search_path = skew, pg_catalog, public`).execute(db);
    } finally {
      await db.destroy();
    }
    const t = await startTestControlPlane({ databaseUrl: url, leaseSeconds: 30 });
    try {
      await t.createCluster('clk');
      const a = await t.agent('clk', 'cluster-agent');
      const before = Date.now();
      const { id } = (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'clk' }, type: 'manifest', spec: { manifests: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n' } })).body;
      const claimed = await a.client.poll(1);
      assert.equal(claimed.command?.id, id);
      const job = (await t.admin.request<{ createdAt: string; claimedAt: string | null }>('GET', `/v1/commands/${id}`)).body;
      const ahead = 120_000;
      for (const [name, at] of [['createdAt', job.createdAt], ['claimedAt', job.claimedAt]] as const) {
        const ms = Date.parse(at!);
        assert.ok(ms >= before + ahead - 20_000 && ms <= Date.now() + ahead + 20_000, `${name} ${at} is the database's time (two minutes ahead of ${new Date(before).toISOString()})`);
      }
      a.client.close();
    } finally {
      await t.close();
    }
  });

  it('a statement stuck behind a lock is cancelled by the statement timeout: 503 storage_unavailable, and the server serves again once the lock is gone', async () => {
    const url = await freshDatabase();
    const t = await startTestControlPlane({ databaseUrl: url, databaseStatementTimeoutMs: 500 });
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    try {
      await t.createCluster('stuck');
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE commands IN ACCESS EXCLUSIVE MODE');
      const body = { target: { cluster: 'stuck' }, type: 'manifest', spec: { manifests: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n' } };
      const err = await t.admin.request('POST', '/v1/commands', body).then(() => assert.fail('answered while the table was locked'), (e: unknown) => e);
      assert.ok(err instanceof HttpError, String(err));
      assert.equal(err.status, 503);
      assert.equal(err.code, 'storage_unavailable');
      assert.match(err.message, /PostgreSQL 57014/);
      await locker.query('ROLLBACK');
      assert.equal((await t.admin.request('POST', '/v1/commands', body)).status, 202);
    } finally {
      await locker.end();
      await t.close();
    }
  });
});
