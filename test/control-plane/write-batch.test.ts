/**
 * The write batch (control-plane/db/write-batch.ts) on a real SQLite file under the durability
 * barrier: a turn's direct writes share one transaction, invisible to another connection until the
 * end of the turn; the barrier commits the batch before its sync; a Kysely transaction in the same
 * turn starts after it; WAL frames per command fall; and a batch SQLite undoes, or whose COMMIT
 * fails, refuses every answer that waits for a sync instead of acknowledging what was undone.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { openDatabase, migrate, type OpenedDatabase } from '../../control-plane/db/database.ts';
import { openDurability, type Durability } from '../../control-plane/db/durability.ts';
import { insertAccount, insertCluster } from '../../control-plane/db/accounts.repository.ts';
import { insertCommand } from '../../control-plane/db/commands.repository.ts';
import { batched, runRequest, writeBatchOpen } from '../../control-plane/db/write-batch.ts';
import { removeDir, tempDir } from '../support/control-plane.ts';

const turn = () => new Promise<void>((r) => setImmediate(r));

describe('write batch: one transaction per turn for the hot paths\' writes', () => {
  let dir: string;
  let o: OpenedDatabase;
  let file: string;
  let durability: Durability | undefined;
  let reader: SQLite.Database;
  const submit = (n: number) =>
    insertCommand(o.db, { aid: 'acct1', cid: 'c1', nid: null, type: 'manifest', spec: '{}', idempotencyKey: `k${n}`, timeoutSeconds: 60, maxAttempts: 1, now: Date.now() });
  const committed = () => (reader.prepare('SELECT count(*) FROM commands').pluck().get() as number);

  beforeEach(async () => {
    dir = tempDir('tether-write-batch-');
    file = join(dir, 'tether.db');
    o = openDatabase(file);
    await migrate(o.db);
    const now = Date.now();
    await insertAccount(o.db, { aid: 'acct1', name: 'a', now });
    await insertCluster(o.db, { aid: 'acct1', cid: 'c1', domain: 'c1.acct1.local', now });
    reader = new SQLite(file, { readonly: true });
  });
  afterEach(async () => {
    reader.close();
    durability?.close();
    durability = undefined;
    await o.db.destroy();
    removeDir(dir);
  });

  it('shares one transaction between a turn\'s writes, committed at the end of the turn', async () => {
    durability = openDurability({ ...o, file, mode: 'full' });
    await Promise.all([submit(1), submit(2), submit(3)]);
    assert.equal(writeBatchOpen(o.sqlite), true);
    assert.equal(committed(), 0, 'another connection sees nothing before the batch commits');
    await turn();
    assert.equal(writeBatchOpen(o.sqlite), false);
    assert.equal(committed(), 3);
  });

  it('is a plain autocommit write without the barrier (durability normal)', async () => {
    durability = openDurability({ ...o, file, mode: 'normal' });
    await submit(1);
    assert.equal(o.sqlite.inTransaction, false);
    assert.equal(committed(), 1);
  });

  it('commits the batch before the barrier\'s sync counts what it covers', async () => {
    durability = openDurability({ ...o, file, mode: 'full' });
    await submit(1);
    const wait = durability.barrier();
    assert.ok(wait, 'a write to wait for');
    assert.equal(committed(), 1, 'committed when the sync started, in the same turn');
    await wait;
  });

  it('lets a Kysely transaction of the same turn start, after the batch', async () => {
    durability = openDurability({ ...o, file, mode: 'full' });
    await submit(1);
    await o.db.transaction().execute(async (trx) => {
      await trx.updateTable('accounts').set({ name: 'b' }).where('aid', '=', 'acct1').execute();
    });
    assert.equal(committed(), 1);
    assert.equal(reader.prepare(`SELECT name FROM accounts WHERE aid = 'acct1'`).pluck().get(), 'b');
  });

  it('writes fewer WAL frames per command than a commit per write', async () => {
    const frames = async (perTurn: number) => {
      const before = statSync(`${file}-wal`).size;
      for (let i = 0; i < 40; i += perTurn) {
        await Promise.all(Array.from({ length: perTurn }, (_, k) => submit(perTurn * 1000 + i + k)));
        await turn();
      }
      return (statSync(`${file}-wal`).size - before) / 40;
    };
    o.sqlite.pragma('wal_autocheckpoint = 0');
    const alone = await frames(1);
    durability = openDurability({ ...o, file, mode: 'full' });
    const shared = await frames(10);
    assert.ok(shared * 2 < alone, `bytes of WAL per command: ${shared} in batches of 10 against ${alone} one commit each`);
  });

  it('refuses the answers of a batch whose COMMIT failed, however late they are awaited, and serves requests that start after', async () => {
    durability = openDurability({ ...o, file, mode: 'full' });
    // A deferred foreign key is checked at COMMIT: the batch's commit fails, a real SQLite error.
    o.sqlite.exec('CREATE TABLE parent (id INTEGER PRIMARY KEY); CREATE TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)');
    let release!: () => void;
    const later = new Promise<void>((r) => (release = r));
    // A request that writes in the batch and awaits its barrier only after the loss (as a held poll does).
    const inProgress = runRequest(async () => {
      await submit(1);
      await later;
      return durability!.barrier();
    });
    const queued = runRequest(async () => {
      await submit(2);
      batched(o.sqlite, () => o.sqlite.prepare('INSERT INTO child (pid) VALUES (42)').run());
      return durability!.barrier(); // starts the sync, whose commit fails
    });
    await assert.rejects(queued, (err: { code?: string }) => err.code === 'storage_unavailable');
    assert.equal(committed(), 0, 'both commands went with the batch');
    // A request after the loss is served, and its sync covers the lost writes' count too.
    await runRequest(async () => {
      await submit(3);
      const w = durability!.barrier();
      assert.ok(w);
      await w;
    });
    assert.equal(committed(), 1);
    release();
    await assert.rejects(inProgress, (err: { code?: string }) => err.code === 'storage_unavailable', 'acknowledged a write that was rolled back');
  });

  it('refuses the answers of a batch that SQLite rolled back with a failing statement', async () => {
    durability = openDurability({ ...o, file, mode: 'full' });
    await runRequest(async () => {
      await submit(1);
      // What SQLite does on some I/O and full-disk errors, done here by the statement itself: the
      // whole transaction undone, the statement failing.
      assert.throws(() =>
        batched(o.sqlite, () => {
          o.sqlite.prepare('ROLLBACK').run();
          throw new Error('disk I/O error');
        }),
      );
      assert.equal(writeBatchOpen(o.sqlite), false);
      const wait = durability!.barrier();
      assert.ok(wait);
      await assert.rejects(wait, (err: { code?: string }) => err.code === 'storage_unavailable');
    });
    assert.equal(committed(), 0);
  });
});
