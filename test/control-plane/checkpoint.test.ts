/**
 * Checkpoints off the request path (control-plane/db/checkpoint.ts, on by default): the storage the
 * server opens has a worker thread copying the WAL; a pass of the worker alone lets the next commit start the
 * WAL over (it stays at one round of commits, where without any checkpoint it grows with every
 * commit); under commits that never pause (a pass never finds the WAL whole) the main connection's
 * threshold still bounds it, and finds most of it copied by the worker; a worker that cannot work
 * is reported and the main connection's checkpoints go on alone. Power-loss durability with the
 * worker on: test/faults/power-loss.test.ts.
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

  it('the server storage checkpoints on a worker by default, inline with TETHER_SQLITE_CHECKPOINT=inline, and refuses other values', async function () {
    this.timeout(30_000);
    const before = process.env.TETHER_SQLITE_CHECKPOINT;
    const withEnv = (value: string) => {
      process.env.TETHER_SQLITE_CHECKPOINT = value;
      try {
        return openStorage({ dataDir: dir, databasePoolSize: 1, databaseStatementTimeoutMs: 1000 });
      } finally {
        if (before === undefined) delete process.env.TETHER_SQLITE_CHECKPOINT;
        else process.env.TETHER_SQLITE_CHECKPOINT = before;
      }
    };
    const inline = withEnv('inline');
    try {
      assert.equal(inline.dialect === 'sqlite' && inline.checkpointer.mode, 'inline');
    } finally {
      await inline.close();
    }
    assert.throws(() => withEnv('workers'), /TETHER_SQLITE_CHECKPOINT must be worker or inline/);
    delete process.env.TETHER_SQLITE_CHECKPOINT;
    try {
      storage = openStorage({ dataDir: dir, databasePoolSize: 1, databaseStatementTimeoutMs: 1000 });
    } finally {
      if (before !== undefined) process.env.TETHER_SQLITE_CHECKPOINT = before;
    }
    assert.equal(storage.dialect, 'sqlite');
    if (storage.dialect !== 'sqlite') return;
    await migrate(storage.db);
    const { sqlite, checkpointer } = storage;
    assert.equal(checkpointer.mode, 'worker');
    assert.equal(Number(sqlite.pragma('wal_autocheckpoint', { simple: true })), INLINE_AUTOCHECKPOINT_PAGES, 'the bound of the WAL');
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

  it('a pass of the worker alone lets the next commit start the WAL over', async function () {
    this.timeout(60_000);
    const file = join(dir, 'tether.db');
    const o = openDatabase(file);
    // Passes only when asked, and no automatic checkpoint: the worker alone keeps the WAL bounded.
    const cp = startCheckpointer(o.sqlite, file, { mode: 'worker', intervalMs: 3_600_000 });
    o.sqlite.pragma('wal_autocheckpoint = 0');
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

  it('under commits that never pause, the WAL stays within the main connection\'s threshold, and the worker copies most of it', async function () {
    this.timeout(60_000);
    const file = join(dir, 'tether.db');
    const o = openDatabase(file);
    const cp = startCheckpointer(o.sqlite, file, { mode: 'worker' }); // every 200 ms, as the server
    try {
      o.sqlite.exec('CREATE TABLE filler (x BLOB)');
      const insert = o.sqlite.prepare('INSERT INTO filler (x) VALUES (?)');
      let maxWal = 0;
      // ~22,500 frames, 5.6 times the threshold, one commit at a time with the worker copying beside.
      for (let r = 0; r < ROUNDS; r++) {
        for (let i = 0; i < ROWS; i++) insert.run(blob);
        maxWal = Math.max(maxWal, statSync(`${file}-wal`).size);
        await new Promise((resolve) => setImmediate(resolve));
      }
      // The threshold, plus what commits append while a pass of the worker holds the checkpoint (the
      // main connection's own then gives up at once): here ~20,000 commits/s, far above a server's.
      const bound = 3 * INLINE_AUTOCHECKPOINT_PAGES * 4120;
      assert.ok(maxWal <= bound, `WAL ${maxWal} bytes (bound ${bound}; all the frames: ~${ROUNDS * 750 * 4120})`);
      assert.equal(cp.stats().failed, false);
      await cp.stop();
      assert.equal(o.sqlite.prepare('SELECT count(*) FROM filler').pluck().get(), ROUNDS * ROWS);
    } finally {
      await cp.stop();
      o.sqlite.close();
    }
  });

  it('a worker started later (the server: after 5 s) starts by itself and copies on its timer', async () => {
    const file = join(dir, 'tether.db');
    const o = openDatabase(file);
    const cp = startCheckpointer(o.sqlite, file, { mode: 'worker', startAfterMs: 50, intervalMs: 20 });
    try {
      o.sqlite.exec('CREATE TABLE filler (x BLOB)');
      const insert = o.sqlite.prepare('INSERT INTO filler (x) VALUES (?)');
      for (let i = 0; i < 10; i++) insert.run(blob);
      const [m] = (await once(cp, 'checkpoint')) as [{ log: number; checkpointed: number }];
      assert.ok(m.log > 0 && m.checkpointed > 0, JSON.stringify(m));
    } finally {
      await cp.stop();
      o.sqlite.close();
    }
  });

  it('a worker that cannot checkpoint is reported; the main connection keeps its own checkpoints', async () => {
    const o = openDatabase(join(dir, 'tether.db'));
    try {
      const cp = startCheckpointer(o.sqlite, join(dir, 'missing', 'tether.db'), { mode: 'worker' });
      const [err] = (await once(cp, 'failed')) as [Error];
      assert.match(String(err.message), /./);
      assert.equal(Number(o.sqlite.pragma('wal_autocheckpoint', { simple: true })), INLINE_AUTOCHECKPOINT_PAGES);
      assert.equal(cp.stats().failed, true);
      assert.equal(await cp.tick(), undefined);
      await cp.stop();
    } finally {
      o.sqlite.close();
    }
  });
});
