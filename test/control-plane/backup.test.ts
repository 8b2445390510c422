/**
 * `tether backup` / `tether restore` against a real `tether server` process under load: submissions
 * and an agent's claims and results go on (from this process) while the backup CLI (a third
 * process) copies the live WAL database; the restored folder, served by a new server, holds every
 * command acknowledged before the backup started, and the old agent and admin token work on it.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { HttpClient } from '../../common/http-client.ts';
import { generateKeyPair } from '../../common/csr.ts';
import { AgentClient, bootstrapAgent } from '../../common/agent/agent-client.ts';
import type { CommandView } from '../../common/wire.ts';
import { freePort, removeDir, spawnControlPlane, stopProcess, tempDir } from '../support/control-plane.ts';
import { runCli } from '../support/cli.ts';
import { sqliteOnly } from '../support/postgres.ts';

describe('tether backup and restore', function () {
  // A PostgreSQL control plane is backed up with pg_dump (postgres.test.ts checks that tether backup says so).
  before(function () {
    sqliteOnly(this, 'tether backup and restore copy the SQLite database of the data folder');
  });
  this.timeout(120_000);
  let dir: string;
  let dataDir: string;
  let server: Awaited<ReturnType<typeof spawnControlPlane>> | undefined;
  let restored: Awaited<ReturnType<typeof spawnControlPlane>> | undefined;
  let admin: HttpClient;
  let caPem: string;
  let adminToken: string;
  let agent: AgentClient;
  let agentCreds: { certPem: string; keyPem: string };
  const backupFile = () => join(dir, 'tether-backup.tar.gz');

  before(async () => {
    dir = tempDir('tether-backup-');
    dataDir = join(dir, 'data');
    server = await spawnControlPlane(dataDir, await freePort());
    caPem = readFileSync(join(dataDir, 'ca.crt'), 'utf8');
    adminToken = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
    admin = new HttpClient({ baseUrl: server.url, ca: caPem, bearerToken: adminToken });
    await admin.request('POST', '/v1/clusters', { cid: 'backup1' });
    const token = (await admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'backup1', role: 'cluster-agent' })).body.token;
    const keys = generateKeyPair();
    const id = await bootstrapAgent({ url: server.url, caPem, token, keys });
    agentCreds = { certPem: id.certificate, keyPem: keys.privateKeyPem };
    agent = new AgentClient(server.url, { ...agentCreds, caPem });
  });
  after(async () => {
    agent?.close();
    admin?.close();
    if (server) await stopProcess(server.proc, 'SIGKILL');
    if (restored) await stopProcess(restored.proc, 'SIGKILL');
    if (dir) removeDir(dir);
  });

  it('takes a consistent copy under load; the restore has every command acknowledged before the backup began', async () => {
    const acked = new Map<number, string>(); // id -> idempotency key
    const finished = new Map<number, string>(); // id -> state reported and acknowledged
    let stop = false;
    let seq = 0;
    const submitter = async () => {
      while (!stop) {
        const key = `load-${++seq}`;
        const r = await admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'backup1' }, type: 'manifest', spec: { manifests: `kind: ConfigMap\n# ${key}\n` }, idempotencyKey: key });
        acked.set(r.body.id, key);
      }
    };
    const worker = async () => {
      while (!stop) {
        const c = (await agent.poll(1)).command;
        if (!c) continue;
        await agent.logs(c.id, c.leaseId, [{ stream: 'stdout', text: `applied ${c.id}` }]);
        const outcome = c.id % 3 === 0 ? 'failed' : 'succeeded';
        await agent.report(c.id, { leaseId: c.leaseId, outcome, ...(outcome === 'failed' ? { error: { code: 'x', message: 'x', retryable: false } } : {}) });
        finished.set(c.id, outcome);
      }
    };
    const load = Promise.all([submitter(), submitter(), worker()]);
    try {
      while (acked.size < 300) await new Promise((r) => setTimeout(r, 20));
      const ackedBefore = new Map(acked);
      const finishedBefore = new Map(finished);
      const countBefore = acked.size;
      const b = await runCli(['backup', '--data-dir', dataDir, '--to', backupFile()], {});
      assert.equal(b.code, 0, b.stderr);
      assert.match(b.stdout, /tether\.db ca\.crt ca\.key server\.crt server\.key admin-token/);
      assert.ok(acked.size > countBefore, 'submissions went on while the backup ran');
      stop = true;
      await load;

      assert.equal(statSync(backupFile()).mode & 0o777, 0o600, 'the backup holds keys and token hashes: 0600');
      // Nothing left behind in the data folder.
      assert.deepEqual(readdirSync(dataDir).filter((n) => n.startsWith('.')), []);

      const target = join(dir, 'restored');
      const r = await runCli(['restore', '--from', backupFile(), '--data-dir', target], {});
      assert.equal(r.code, 0, r.stderr);
      assert.equal(statSync(target).mode & 0o777, 0o700);
      for (const f of ['tether.db', 'ca.key', 'server.key', 'admin-token']) assert.equal(statSync(join(target, f)).mode & 0o777, 0o600, f);
      restored = await spawnControlPlane(target, await freePort());
      const radmin = new HttpClient({ baseUrl: restored.url, ca: caPem, bearerToken: adminToken });
      try {
        for (const [id, key] of ackedBefore) {
          const c = (await radmin.request<CommandView>('GET', `/v1/commands/${id}`)).body;
          assert.equal(c.idempotencyKey, key, `command ${id}`);
        }
        for (const [id, state] of finishedBefore) assert.equal((await radmin.request<CommandView>('GET', `/v1/commands/${id}`)).body.state, state, `command ${id}`);
        // The restored control plane is the same one: its CA verifies the old agent, which works on.
        const oldAgent = new AgentClient(restored.url, { ...agentCreds, caPem });
        try {
          await oldAgent.heartbeat({ running: [] });
          const sub = await radmin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'backup1' }, type: 'manifest', spec: { manifests: 'kind: ConfigMap\n' } });
          let got: number | undefined;
          for (let i = 0; i <= sub.body.id && got !== sub.body.id; i++) {
            const c = (await oldAgent.poll(0)).command;
            assert.ok(c, 'the new command is claimable');
            await oldAgent.report(c.id, { leaseId: c.leaseId, outcome: 'succeeded' });
            got = c.id;
          }
          assert.equal(got, sub.body.id);
        } finally {
          oldAgent.close();
        }
      } finally {
        radmin.close();
      }
    } finally {
      stop = true;
      await load.catch(() => {});
    }
  });

  it('copies what is still only in the write-ahead log (a copy of tether.db alone would miss it)', async () => {
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) ids.push((await admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'backup1' }, type: 'manifest', spec: { manifests: 'kind: ConfigMap\n' }, idempotencyKey: `wal-${i}` })).body.id);
    assert.ok(statSync(join(dataDir, 'tether.db-wal')).size > 0, 'the server holds a write-ahead log');
    const file = join(dir, 'wal.tar.gz');
    const b = await runCli(['backup', '--data-dir', dataDir, '--to', file], {});
    assert.equal(b.code, 0, b.stderr);
    const target = join(dir, 'wal-restored');
    assert.equal((await runCli(['restore', '--from', file, '--data-dir', target], {})).code, 0);
    const other = await spawnControlPlane(target, await freePort());
    const c = new HttpClient({ baseUrl: other.url, ca: caPem, bearerToken: adminToken });
    try {
      for (const [i, id] of ids.entries()) assert.equal((await c.request<CommandView>('GET', `/v1/commands/${id}`)).body.idempotencyKey, `wal-${i}`);
    } finally {
      c.close();
      await stopProcess(other.proc);
    }
  });

  it('refuses to restore over a running server, and over a non-empty folder without --force', async () => {
    const live = await runCli(['restore', '--from', backupFile(), '--data-dir', dataDir, '--force'], {});
    assert.equal(live.code, 1);
    assert.match(live.stderr, /running on/);
    assert.equal((await admin.request<{ ok: boolean }>('GET', '/healthz')).body.ok, true);
    // The same lock keeps a second server off a folder one already serves.
    await assert.rejects(spawnControlPlane(dataDir, await freePort()), /control plane exited \(1\)[\s\S]*another tether server \(or a restore\) is running on/);
    assert.equal((await admin.request<{ ok: boolean }>('GET', '/healthz')).body.ok, true);

    await stopProcess(restored!.proc);
    restored = undefined;
    const target = join(dir, 'restored');
    const full = await runCli(['restore', '--from', backupFile(), '--data-dir', target], {});
    assert.equal(full.code, 1);
    assert.match(full.stderr, /is not empty[\s\S]*--force/);
    writeFileSync(join(target, 'stale-file'), 'x');
    const forced = await runCli(['restore', '--from', backupFile(), '--data-dir', target, '--force'], {});
    assert.equal(forced.code, 0, forced.stderr);
    assert.ok(!readdirSync(target).includes('stale-file'), '--force replaces what the folder held');
  });

  it("run by root on the service user's folder: nothing left owned by root, the restored files are the folder owner's", async function () {
    if (process.getuid?.() !== 0) {
      console.log('      skipped: needs root (to act on a folder of another user)');
      this.skip();
    }
    const { uid, gid } = { uid: 65534, gid: 65534 }; // nobody
    const owned = join(dir, 'owned');
    const r0 = await runCli(['restore', '--from', backupFile(), '--data-dir', join(owned, 'data')], {});
    assert.equal(r0.code, 0, r0.stderr);
    chmodSync(dir, 0o755);
    chmodSync(owned, 0o755);
    for (const n of ['', ...readdirSync(join(owned, 'data'))]) chownSync(join(owned, 'data', n), uid, gid);
    const b = await runCli(['backup', '--data-dir', join(owned, 'data'), '--to', join(owned, 'again.tar.gz')], {});
    assert.equal(b.code, 0, b.stderr);
    for (const n of readdirSync(join(owned, 'data'))) assert.equal(statSync(join(owned, 'data', n)).uid, uid, `${n} after the backup`);
    // Under a parent only root may enter, the owner cannot reach the folder: read as root instead.
    chmodSync(owned, 0o700);
    const b2 = await runCli(['backup', '--data-dir', join(owned, 'data'), '--to', join(owned, 'again.tar.gz')], {});
    assert.equal(b2.code, 0, b2.stderr);
    chmodSync(owned, 0o755);
    const target = join(owned, 'target');
    mkdirSync(target, { mode: 0o700 });
    chownSync(target, uid, gid);
    const r = await runCli(['restore', '--from', join(owned, 'again.tar.gz'), '--data-dir', target], {});
    assert.equal(r.code, 0, r.stderr);
    for (const n of readdirSync(target)) assert.equal(statSync(join(target, n)).uid, uid, `${n} after the restore`);
    assert.ok(readdirSync(target).includes('server.lock'));
  });

  it('refuses hostile archives before writing anything: paths out of the folder, links, unknown files, inflated sizes', async () => {
    // Crafted with Python's tarfile (the project's own writer cannot make such entries).
    const craft = `
import io, json, sys, tarfile
out, kind = sys.argv[1], sys.argv[2]
sha = '0' * 64
files = [{'name': 'tether.db', 'size': 4, 'sha256': sha}, {'name': 'ca.crt', 'size': 4, 'sha256': sha}, {'name': 'ca.key', 'size': 4, 'sha256': sha}]
if kind == 'huge': files[0]['size'] = 2 ** 40
if kind == 'unknown': files.append({'name': 'authorized_keys', 'size': 4, 'sha256': sha})
manifest = {'format': 'tether-backup/1', 'createdAt': 'x', 'host': 'x', 'database': {'migrations': [], 'commands': 0, 'agents': 0, 'bytes': 0}, 'files': files}
def add(t, name, data):
    i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))
with tarfile.open(out, 'w:gz', format=tarfile.USTAR_FORMAT) as t:
    add(t, 'tether-backup.json', json.dumps(manifest).encode())
    if kind == 'escape': add(t, '../escape', b'evil')
    elif kind == 'link':
        i = tarfile.TarInfo('tether.db'); i.type = tarfile.SYMTYPE; i.linkname = '/etc/passwd'; t.addfile(i)
    else: add(t, 'tether.db', b'abcd')
`;
    const script = join(dir, 'craft.py');
    writeFileSync(script, craft);
    for (const [kind, pattern] of [
      ['escape', /unexpected entry name "\.\.\/escape"/],
      ['link', /tether\.db is not a regular file/],
      ['unknown', /authorized_keys.*no data-folder file/],
      ['huge', /restoring needs 10995116277\d\d bytes; the data folder's file system has \d+ free/],
    ] as const) {
      const file = join(dir, `${kind}.tar.gz`);
      execFileSync('python3', [script, file, kind]);
      const target = join(dir, 'hostile', kind);
      const r = await runCli(['restore', '--from', file, '--data-dir', target], {});
      assert.equal(r.code, 1, `${kind}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, pattern, kind);
      assert.deepEqual(readdirSync(target).filter((n) => n !== 'server.lock'), [], `${kind}: nothing restored`);
    }
    assert.deepEqual(readdirSync(join(dir, 'hostile')).sort(), ['escape', 'huge', 'link', 'unknown'], 'nothing written beside the targets');
  });

  it('refuses a damaged or foreign archive and leaves the folder as it was', async () => {
    const bytes = readFileSync(backupFile());
    const damaged = join(dir, 'damaged.tar.gz');
    const copy = Buffer.from(bytes);
    copy[Math.floor(copy.length / 2)]! ^= 0xff;
    writeFileSync(damaged, copy);
    const target = join(dir, 'restored');
    const before = readFileSync(join(target, 'tether.db'));
    for (const [file, pattern] of [
      [damaged, /not a readable tether backup|SHA-256|invalid_backup|damaged/],
      [join(dataDir, 'ca.crt'), /not a readable tether backup/],
    ] as const) {
      const r = await runCli(['restore', '--from', file, '--data-dir', target, '--force'], {});
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, pattern);
      assert.deepEqual(readFileSync(join(target, 'tether.db')), before);
      assert.deepEqual(readdirSync(target).filter((n) => n.startsWith('.')), [], 'no staging folder left');
    }
  });
});
