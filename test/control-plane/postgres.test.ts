/**
 * The control plane's storage on PostgreSQL (issue 15): opening it from a URL, the migrations
 * (once, under the advisory lock, when replicas start together), the URL's password kept out of
 * the logs. Runs in every mocha run, on the real PostgreSQL of test/support/postgres.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { freshDatabase } from '../support/postgres.ts';
import { openPostgres, redactDatabaseUrl } from '../../control-plane/db/postgres.ts';
import { migrate } from '../../control-plane/db/database.ts';
import { freePort, nodeArgs, removeDir, spawnControlPlane, stopProcess, tempDir } from '../support/control-plane.ts';
import { sql } from 'kysely';

describe('PostgreSQL storage', function () {
  this.timeout(120_000);

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
});
