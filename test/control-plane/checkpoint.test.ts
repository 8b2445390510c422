/**
 * Checkpoints off the request path (control-plane/db/checkpoint.ts): the storage the server opens
 * has the main connection's automatic checkpoints off and a worker thread checkpointing; the WAL
 * stays bounded while many commits go through (and grows without bound with automatic checkpoints
 * off and no worker: what the worker is for); a worker that cannot work hands checkpoints back to
 * the main connection. Power-loss durability with the worker on: test/faults/power-loss.test.ts.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { migrate, openDatabase } from '../../control-plane/db/database.ts';
import { openStorage, type Storage } from '../../control-plane/db/storage.ts';
import { INLINE_AUTOCHECKPOINT_PAGES, startCheckpointer, type Checkpointer } from '../../control-plane/db/checkpoint.ts';
import { removeDir, tempDir } from '../support/control-plane.ts';

const ROUNDS = 30;
const ROWS = 250; // ~750 frames of 4 KiB per round: ~3 MiB of WAL
const blob = Buffer.alloc(4000, 7);

/** A pass after everything committed so far; the WAL must then be fully copied (nothing else writes). */
async function fullyCopied(cp: Checkpointer): Promise<void> {
  const r = await cp.tick();
  assert.ok(r, 'the worker answered');
  assert.equal(r.checkpointed, r.log, 'every frame copied');
}

describe('checkpoints on a worker thread', () => {
  let dir: string;
  let storage: Storage | undefined;
  beforeEach(() => {
    dir = tempDir('tether-checkpoint-');
  });
  afterEach(async () => {
    await storage?.close();
    storage = undefined;
    removeDir(dir);
  });

  it('the server storage checkpoints on a worker, not in the committing request', async function () {
    this.timeout(30_000);
    storage = openStorage({ dataDir: dir, databasePoolSize: 1, databaseStatementTimeoutMs: 1000 });
    assert.equal(storage.dialect, 'sqlite');
    if (storage.dialect !== 'sqlite') return;
    await migrate(storage.db);
    const { sqlite, checkpointer } = storage;
    assert.equal(checkpointer.mode, 'worker');
    assert.equal(Number(sqlite.pragma('wal_autocheckpoint', { simple: true })), 0, 'no checkpoint in the committing request');
    sqlite.exec('CREATE TABLE filler (x BLOB)');
    const insert = sqlite.prepare('INSERT INTO filler (x) VALUES (?)');
    for (let i = 0; i < ROWS; i++) insert.run(blob);
    await fullyCopied(checkpointer);
    assert.ok(checkpointer.stats().passive >= 1);
    await storage.close();
    storage = undefined;
    const again = openDatabase(join(dir, 'tether.db'));
    try {
      assert.equal(again.sqlite.prepare('SELECT count(*) FROM filler').pluck().get(), ROWS);
      assert.equal(again.sqlite.pragma('integrity_check', { simple: true }), 'ok');
    } finally {
      again.sqlite.close();
    }
  });

  it('keeps the WAL bounded over many commits: a pass lets the next commit start it over', async function () {
    this.timeout(60_000);
    const file = join(dir, 'tether.db');
    const o = openDatabase(file);
    const restartPages = 1000;
    // Passes only when asked (the timer's would race the writer: a restart it makes miss is what RESTART is for).
    const cp = startCheckpointer(o.sqlite, file, { mode: 'worker', restartPages, intervalMs: 3_600_000 });
    try {
      o.sqlite.exec('CREATE TABLE filler (x BLOB)');
      const insert = o.sqlite.prepare('INSERT INTO filler (x) VALUES (?)');
      let maxWal = 0;
      for (let r = 0; r < ROUNDS; r++) {
        for (let i = 0; i < ROWS; i++) insert.run(blob); // one commit each
        maxWal = Math.max(maxWal, statSync(`${file}-wal`).size);
        await fullyCopied(cp);
      }
      // A round writes ~750 frames of 4 KiB + 24 bytes; each starts the WAL over after a full pass.
      const bound = 2 * 1000 * 4120;
      assert.ok(maxWal < bound, `WAL ${maxWal} bytes after ${ROUNDS} rounds (bound ${bound}); all of them is ~${ROUNDS * 750 * 4120}`);
      assert.ok(cp.stats().passive >= ROUNDS, `${cp.stats().passive} passes`);
      assert.equal(cp.stats().failed, false);
      await cp.stop();
      assert.equal(o.sqlite.prepare('SELECT count(*) FROM filler').pluck().get(), ROUNDS * ROWS);
    } finally {
      await cp.stop();
      o.sqlite.close();
    }
  });

  it('without the worker and with automatic checkpoints off the WAL grows with every commit (what the worker bounds)', async () => {
    const o = openDatabase(join(dir, 'tether.db'));
    try {
      const cp = startCheckpointer(o.sqlite, join(dir, 'tether.db'), { mode: 'inline' });
      assert.equal(cp.mode, 'inline');
      o.sqlite.pragma('wal_autocheckpoint = 0');
      o.sqlite.exec('CREATE TABLE filler (x BLOB)');
      const insert = o.sqlite.prepare('INSERT INTO filler (x) VALUES (?)');
      for (let r = 0; r < ROUNDS; r++) for (let i = 0; i < ROWS; i++) insert.run(blob);
      assert.ok(statSync(join(dir, 'tether.db-wal')).size > ROUNDS * ROWS * 4096, 'every page stays in the WAL');
      await cp.stop();
    } finally {
      o.sqlite.close();
    }
  });

  it('a worker that cannot checkpoint hands checkpoints back to the main connection', async () => {
    const o = openDatabase(join(dir, 'tether.db'));
    try {
      const cp = startCheckpointer(o.sqlite, join(dir, 'missing', 'tether.db'), { mode: 'worker' });
      assert.equal(Number(o.sqlite.pragma('wal_autocheckpoint', { simple: true })), 0);
      const [err] = (await once(cp, 'failed')) as [Error];
      assert.match(String(err.message), /./);
      assert.equal(Number(o.sqlite.pragma('wal_autocheckpoint', { simple: true })), INLINE_AUTOCHECKPOINT_PAGES);
      assert.equal(cp.stats().failed, true);
      await cp.stop();
    } finally {
      o.sqlite.close();
    }
  });
});
