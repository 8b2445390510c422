/**
 * `tether backup` and `tether restore`: one file (a gzipped tar, 0600) that brings the whole
 * control plane back — a consistent online snapshot of the database taken while the server serves,
 * plus what the data folder needs besides it (the CA that signed every agent's certificate, the
 * serving certificate, the admin token, the session-ticket keys) and a manifest with their SHA-256.
 * The bundle cache is left out (it is fetched again on demand). See docs/control-plane.md.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, closeSync, createReadStream, createWriteStream, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, statfsSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { z } from 'zod';
import { TetherError, errorMessage } from '../../common/errors.ts';
import { LOCK_FILE, checkDatabase, lockDataDir, snapshotDatabase, type DatabaseSummary } from '../db/backup.ts';
import { padding, readTar, tarHeader, trailer } from './tar.ts';

const MANIFEST = 'tether-backup.json';
const FORMAT = 'tether-backup/1';
const DATABASE = 'tether.db';
/** What a data folder holds besides the database, and the mode each file is restored with. */
const DATA_FILES: Record<string, { mode: number; required: boolean }> = {
  'ca.crt': { mode: 0o644, required: true },
  'ca.key': { mode: 0o600, required: true },
  'server.crt': { mode: 0o644, required: false },
  'server.key': { mode: 0o600, required: false },
  'admin-token': { mode: 0o600, required: false },
  'tls-ticket-keys': { mode: 0o600, required: false },
};
const MAX_MANIFEST_BYTES = 64 * 1024;
const MAX_SMALL_FILE_BYTES = 1024 * 1024;
const MAX_DATABASE_BYTES = 2 ** 40;

const manifestSchema = z
  .object({
    format: z.literal(FORMAT),
    createdAt: z.string().max(40),
    host: z.string().max(255),
    database: z.object({ migrations: z.array(z.string().max(200)).max(1000), commands: z.number().int().min(0), agents: z.number().int().min(0), bytes: z.number().int().min(0) }),
    files: z
      .array(z.object({ name: z.string(), size: z.number().int().min(0), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict())
      .min(1)
      .max(Object.keys(DATA_FILES).length + 1),
  })
  .strict();
type Manifest = z.infer<typeof manifestSchema>;

const refused = (code: string, message: string, status = 409) => new TetherError(code, message, { status });
const invalidBackup = (message: string) => new TetherError('invalid_backup', message, { status: 400 });

export interface BackupResult {
  file: string;
  bytes: number;
  createdAt: string;
  files: string[];
  database: DatabaseSummary & { bytes: number };
}

/**
 * Runs `fn` with the effective user and group of the data folder's owner when run as root for a
 * folder that is not root's (the service's own user): the files SQLite creates beside the database
 * while reading it (-wal, -shm) then belong to the service, not to root.
 */
async function asOwnerOf<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const st = statSync(dir);
  if (process.geteuid?.() !== 0 || st.uid === 0 || !process.seteuid || !process.setegid) return fn();
  process.setegid(st.gid);
  process.seteuid(st.uid);
  try {
    return await fn();
  } catch (err) {
    // The owner cannot reach the folder (a parent only root may enter): read it as root instead.
    const code = (err as { code?: string }).code;
    if (code !== 'EACCES' && code !== 'SQLITE_CANTOPEN') throw err;
  } finally {
    process.seteuid(0);
    process.setegid(0);
  }
  return fn();
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** `tether backup --data-dir DIR --to FILE`: safe while a server runs on DIR. */
export async function backupDataDir(dataDirIn: string, toIn: string, now = Date.now()): Promise<BackupResult> {
  const dataDir = resolve(dataDirIn);
  const to = resolve(toIn);
  if (!existsSync(join(dataDir, DATABASE))) throw refused('not_a_data_dir', `${dataDir} holds no ${DATABASE}: not a control plane's data folder`, 404);
  for (const [name, f] of Object.entries(DATA_FILES)) {
    if (f.required && !existsSync(join(dataDir, name))) throw refused('not_a_data_dir', `${dataDir} has no ${name}: a backup without it could not verify any agent`, 404);
  }
  if (to.startsWith(`${dataDir}/`)) throw refused('invalid_destination', 'write the backup outside the data folder', 400);
  const staging = join(dataDir, `.backup-${randomBytes(6).toString('hex')}`);
  const tmp = join(dirname(to), `.${basename(to)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const database = await asOwnerOf(dataDir, async () => {
      mkdirSync(staging, { recursive: true, mode: 0o700 });
      return snapshotDatabase(join(dataDir, DATABASE), join(staging, DATABASE));
    });
    const sources: { name: string; path: string }[] = [{ name: DATABASE, path: join(staging, DATABASE) }];
    for (const name of Object.keys(DATA_FILES)) if (existsSync(join(dataDir, name))) sources.push({ name, path: join(dataDir, name) });
    const files: Manifest['files'] = [];
    for (const s of sources) files.push({ name: s.name, size: statSync(s.path).size, sha256: await sha256File(s.path) });
    const createdAt = new Date(now).toISOString();
    const manifest: Manifest = { format: FORMAT, createdAt, host: hostname(), database, files };
    const manifestBytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);

    async function* archive() {
      yield tarHeader(MANIFEST, manifestBytes.length, 0o600, now);
      yield manifestBytes;
      yield padding(manifestBytes.length);
      for (const s of sources) {
        const size = files.find((f) => f.name === s.name)!.size;
        yield tarHeader(s.name, size, DATA_FILES[s.name]?.mode ?? 0o600, now);
        let sent = 0;
        for await (const chunk of createReadStream(s.path, { end: size - 1 })) {
          sent += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
        if (sent !== size) throw new Error(`${s.name} changed size while being archived`);
        yield padding(size);
      }
      yield trailer();
    }
    const fd = openSync(tmp, 'wx', 0o600);
    await pipeline(Readable.from(archive()), createGzip({ level: 6 }), createWriteStream('', { fd, autoClose: false }));
    fsyncSync(fd);
    closeSync(fd);
    chmodSync(tmp, 0o600);
    renameSync(tmp, to);
    return { file: to, bytes: statSync(to).size, createdAt, files: files.map((f) => f.name), database };
  } finally {
    rmSync(staging, { recursive: true, force: true });
    rmSync(tmp, { force: true });
  }
}

export interface RestoreResult {
  dataDir: string;
  createdAt: string;
  host: string;
  files: string[];
  database: DatabaseSummary;
  /** Entries removed from the data folder first (--force). */
  replaced: string[];
}

/**
 * `tether restore --from FILE --data-dir DIR [--force]`: refuses while a server runs on DIR, and a
 * non-empty DIR without `force`. The archive is unpacked beside the data (DIR/.restore-*), checked
 * (manifest, sizes, SHA-256, SQLite integrity) and only then moved in, so a bad archive leaves the
 * folder as it was.
 */
export async function restoreDataDir(from: string, dataDirIn: string, opts: { force?: boolean } = {}): Promise<RestoreResult> {
  const dataDir = resolve(dataDirIn);
  if (!existsSync(from)) throw refused('backup_not_found', `no backup at ${from}`, 404);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const lock = lockDataDir(dataDir);
  if (!lock) throw refused('server_running', `a tether server (or another restore) is running on ${dataDir}: stop it first`);
  const staging = join(dataDir, `.restore-${randomBytes(6).toString('hex')}`);
  try {
    const present = readdirSync(dataDir).filter((n) => n !== LOCK_FILE && n !== `${LOCK_FILE}-journal`);
    if (present.length > 0 && !opts.force) {
      throw refused('data_dir_not_empty', `${dataDir} is not empty (${present.slice(0, 5).join(', ')}${present.length > 5 ? ', …' : ''}); pass --force to replace what it holds`);
    }
    mkdirSync(staging, { mode: 0o700 });
    const manifest = await unpack(from, staging, () => {
      const fs = statfsSync(dataDir);
      return fs.bavail * fs.bsize;
    });
    const database = checkDatabase(join(staging, DATABASE));

    // Checked: replace. The old database's -wal/-shm must go with it (they would be applied to the restored one).
    for (const n of present) rmSync(join(dataDir, n), { recursive: true, force: true });
    const owner = statSync(dataDir);
    const chown = process.geteuid?.() === 0 && owner.uid !== 0;
    for (const f of manifest.files) {
      const mode = DATA_FILES[f.name]?.mode ?? 0o600;
      chmodSync(join(staging, f.name), mode);
      if (chown) chownSync(join(staging, f.name), owner.uid, owner.gid);
      renameSync(join(staging, f.name), join(dataDir, f.name));
    }
    chmodSync(dataDir, 0o700);
    return { dataDir, createdAt: manifest.createdAt, host: manifest.host, files: manifest.files.map((f) => f.name), database, replaced: present };
  } finally {
    rmSync(staging, { recursive: true, force: true });
    lock.release();
    // The lock file this restore may have created, as root, must stay the server's to open.
    const owner = statSync(dataDir);
    if (process.geteuid?.() === 0 && owner.uid !== 0 && existsSync(join(dataDir, LOCK_FILE))) chownSync(join(dataDir, LOCK_FILE), owner.uid, owner.gid);
  }
}

/** Unpacks and verifies an archive into `dir`; returns its manifest. Refuses anything unexpected. */
async function unpack(from: string, dir: string, freeBytes: () => number): Promise<Manifest> {
  let manifest: Manifest | undefined;
  const manifestChunks: Buffer[] = [];
  const seen = new Set<string>();
  try {
    await readTar(createReadStream(from).pipe(createGunzip()), (e) => {
      if (seen.size === 0) {
        if (e.name !== MANIFEST) throw invalidBackup(`the archive does not start with ${MANIFEST}: not a tether backup`);
        if (e.size > MAX_MANIFEST_BYTES) throw invalidBackup(`${MANIFEST} is larger than ${MAX_MANIFEST_BYTES} bytes`);
        seen.add(e.name);
        return new Writable({
          write(chunk: Buffer, _enc: string, done: () => void) {
            manifestChunks.push(chunk);
            done();
          },
        });
      }
      if (!manifest) {
        manifest = parseManifest(Buffer.concat(manifestChunks));
        // Before the first byte of data: the declared sizes must fit (a small file can inflate to a lot).
        const need = manifest.files.reduce((n, f) => n + f.size, 0);
        if (need > freeBytes()) throw refused('no_space', `restoring needs ${need} bytes; the data folder's file system has ${freeBytes()} free`, 507);
      }
      const listed = manifest.files.find((f) => f.name === e.name);
      if (!listed) throw invalidBackup(`the archive holds ${e.name}, which its manifest does not list`);
      if (seen.has(e.name)) throw invalidBackup(`the archive holds ${e.name} twice`);
      if (e.size !== listed.size) throw invalidBackup(`${e.name} is ${e.size} bytes, its manifest says ${listed.size}`);
      seen.add(e.name);
      return createWriteStream(join(dir, e.name), { flags: 'wx', mode: 0o600 });
    });
  } catch (err) {
    if (err instanceof TetherError) throw err;
    throw invalidBackup(`${from} is not a readable tether backup: ${errorMessage(err)}`);
  }
  if (!manifest) manifest = parseManifest(Buffer.concat(manifestChunks));
  for (const f of manifest.files) {
    if (!seen.has(f.name)) throw invalidBackup(`the archive is missing ${f.name}`);
    if ((await sha256File(join(dir, f.name))) !== f.sha256) throw invalidBackup(`${f.name} does not match its SHA-256 in the manifest (damaged backup)`);
  }
  return manifest;
}

function parseManifest(bytes: Buffer): Manifest {
  let m: Manifest;
  try {
    m = manifestSchema.parse(JSON.parse(bytes.toString('utf8')));
  } catch (err) {
    throw invalidBackup(`${MANIFEST} is not a tether backup manifest: ${errorMessage(err)}`);
  }
  const names = m.files.map((f) => f.name);
  if (!names.includes(DATABASE)) throw invalidBackup(`the backup holds no ${DATABASE}`);
  for (const f of m.files) {
    const known = f.name === DATABASE || f.name in DATA_FILES;
    if (!known) throw invalidBackup(`the manifest lists ${JSON.stringify(f.name)}, which is no data-folder file`);
    if (f.size > (f.name === DATABASE ? MAX_DATABASE_BYTES : MAX_SMALL_FILE_BYTES)) throw invalidBackup(`${f.name} is too large (${f.size} bytes)`);
  }
  for (const [name, f] of Object.entries(DATA_FILES)) if (f.required && !names.includes(name)) throw invalidBackup(`the backup holds no ${name}`);
  if (new Set(names).size !== names.length) throw invalidBackup('the manifest lists a file twice');
  return m;
}
