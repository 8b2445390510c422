/**
 * Disk full and read-only storage under a real `tether server`: its data folder is a small tmpfs.
 * Filled up, submissions are refused with a clear 5xx JSON error while the process stays up
 * (/healthz, reads); once space is freed every acknowledged (202) submission is still there and
 * new ones succeed. On a read-only data folder the server refuses to start (exit 1, EROFS named)
 * and starts with everything once it is writable again. (A read-only remount under a running
 * server is refused by Linux while the database is open, so that case is not reproduced here.) Needs root (mount); otherwise it prints why and skips.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HttpClient, HttpError } from '../../common/http-client.ts';
import { freePort, removeDir, spawnControlPlane, stopProcess, tempDir } from '../support/control-plane.ts';
import { readCommands } from './support.ts';
import { sqliteOnly } from '../support/postgres.ts';

const isRoot = process.getuid?.() === 0;

function mount(args: string[]): void {
  execFileSync('mount', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}
function umount(dir: string): void {
  try {
    execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
  } catch {
    /* not mounted */
  }
}

describe('faults: disk full and read-only data folder on the control plane', function () {
  before(function () {
    sqliteOnly(this, "the disk-full and read-only cases fill the data folder that holds the SQLite database; PostgreSQL's storage is the database server's");
  });
  this.timeout(45_000);
  let base: string;
  let dataDir: string;
  let server: Awaited<ReturnType<typeof spawnControlPlane>> | undefined;
  let admin: HttpClient;
  let seq = 0;

  before(async function () {
    if (!isRoot) {
      console.log('    skipped: needs root to mount a tmpfs as the data folder');
      this.skip();
    }
    base = tempDir('tether-storage-');
    dataDir = join(base, 'data');
    mkdirSync(dataDir);
    try {
      mount(['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', dataDir]);
    } catch (err) {
      console.log(`    skipped: cannot mount a tmpfs here (${String((err as { stderr?: Buffer }).stderr ?? err).trim()})`);
      removeDir(base);
      base = '';
      this.skip();
    }
    server = await spawnControlPlane(dataDir, await freePort());
    admin = new HttpClient({ baseUrl: server.url, ca: readFileSync(join(dataDir, 'ca.crt'), 'utf8'), bearerToken: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim(), timeoutMs: 10_000 });
    await admin.request('POST', '/v1/clusters', { cid: 'disk' });
  });
  after(async () => {
    admin?.close();
    if (server) await stopProcess(server.proc, 'SIGKILL');
    if (base) {
      umount(dataDir);
      removeDir(base);
    }
  });

  const submit = () =>
    admin.request<{ id: number }>('POST', '/v1/commands', {
      target: { cluster: 'disk' }, type: 'manifest', spec: { manifests: `kind: ConfigMap\nmetadata: {name: c${++seq}}\ndata: {x: "${'x'.repeat(8000)}"}\n` }, idempotencyKey: `k${seq}`,
    });
  const healthy = async () => (await admin.request<{ ok: boolean }>('GET', '/healthz')).body.ok;
  const alive = () => server!.proc.exitCode === null && server!.proc.signalCode === null;

  it('disk full: 503 storage_unavailable, process up; after freeing space nothing acknowledged is lost', async () => {
    const acked = new Map<string, number>();
    for (let i = 0; i < 3; i++) acked.set(`k${seq + 1}`, (await submit()).body.id);
    // Fill the filesystem with a file, leaving a little room, then submit until it is full.
    const filler = join(dataDir, 'filler');
    const free = () => { const s = statfsSync(dataDir); return s.bavail * s.bsize; };
    writeFileSync(filler, Buffer.alloc(Math.max(0, free() - 64 * 1024)));
    const refusals: HttpError[] = [];
    try {
      for (let i = 0; i < 200 && refusals.length < 5; i++) {
        const key = `k${seq + 1}`;
        try {
          acked.set(key, (await submit()).body.id);
        } catch (err) {
          if (!(err instanceof HttpError)) throw err;
          refusals.push(err);
        }
      }
    } catch (err) {
      rmSync(filler, { force: true });
      throw err;
    }
    assert.ok(refusals.length >= 5, `the filesystem never filled up (${acked.size} acknowledged, ${free()} bytes free)`);
    for (const e of refusals) {
      assert.equal(e.status, 503, `${e.status} ${e.code}: ${e.message}`);
      assert.equal(e.code, 'storage_unavailable', e.message);
    }
    assert.ok(alive(), 'the control plane exited when the disk filled up');
    assert.equal(await healthy(), true);
    // Reads still work while full.
    const someId = [...acked.values()][0]!;
    try {
      assert.equal((await admin.request<{ id: number }>('GET', `/v1/commands/${someId}`)).body.id, someId);
    } finally {
      rmSync(filler);
    }
    const after = (await submit()).body.id;
    acked.set(`k${seq}`, after);
    const stored = new Map(readCommands(dataDir).map((c) => [c.idempotency_key, c.id]));
    for (const [key, id] of acked) assert.equal(stored.get(key), id, `acknowledged submission ${key} (id ${id}) is gone`);
    for (const id of acked.values()) assert.equal((await admin.request<{ id: number }>('GET', `/v1/commands/${id}`)).body.id, id);
    assert.ok(alive());
  });

  it('read-only data folder: the server refuses to start with a clear message, and starts with everything once writable', async () => {
    const id = (await submit()).body.id;
    // Linux refuses to remount read-only while a file is open for writing (the database is), so
    // the server is stopped, the folder remounted read-only, and the server started on it.
    const port = Number(new URL(server!.url).port);
    await stopProcess(server!.proc, 'SIGTERM');
    server = undefined;
    mount(['-o', 'remount,ro', dataDir]);
    try {
      await assert.rejects(spawnControlPlane(dataDir, port), (err: Error) => {
        assert.match(err.message, /control plane exited \(1\)[\s\S]*EROFS: read-only file system/);
        return true;
      });
    } finally {
      mount(['-o', 'remount,rw', dataDir]);
    }
    server = await spawnControlPlane(dataDir, port);
    assert.equal((await admin.request<{ id: number }>('GET', `/v1/commands/${id}`)).body.id, id);
    await submit();
    assert.ok(alive());
  });
});
