/**
 * A real PostgreSQL for the tests, from Debian's package (/usr/lib/postgresql/<version>/bin):
 * started once per mocha run on first use, in a temp folder, on a loopback port, with a password
 * (scram) so URLs carry one as in production, and with fsync off (tests need no durability).
 * PostgreSQL refuses to run as root: as root it runs as the `postgres` user.
 *
 * Each caller gets a fresh database, copied from a migrated template (CREATE DATABASE … TEMPLATE
 * takes tens of milliseconds). `TETHER_TEST_DATABASE=postgres` makes the control-plane helpers
 * (control-plane.ts) run every server on one: databaseFor(dataDir) keeps one database per data
 * folder, so a test that restarts a server on its folder finds its data again.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** Whether the control-plane helpers run on PostgreSQL in this mocha run. */
export const onPostgres = process.env.TETHER_TEST_DATABASE === 'postgres';

/** Says why a test runs only on SQLite (printed, never a silent skip), and whether to skip it. */
export function sqliteOnly(ctx: Mocha.Context, reason: string): void {
  if (!onPostgres) return;
  process.stdout.write(`      (SQLite only: ${reason})\n`);
  ctx.skip();
}

/**
 * For the tests of the PostgreSQL storage itself: without PostgreSQL installed they say so and
 * skip, unless in CI (CI set), where set-up installs it and its absence is a failure.
 */
export function requirePostgres(ctx: Mocha.Context): void {
  if (postgresBinDir()) return;
  if (process.env.CI) throw new Error('PostgreSQL is not installed (Debian package postgresql; .ci/run and scripts/test.sh install it as root)');
  process.stdout.write('      (skipped: PostgreSQL is not installed; install Debian\'s postgresql package, or run npm test as root, which installs it)\n');
  ctx.skip();
}

export function postgresBinDir(): string | undefined {
  if (process.env.TETHER_PG_BIN) return process.env.TETHER_PG_BIN;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'postgres'))).sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

interface Server {
  proc: ChildProcess;
  dir: string;
  port: number;
  password: string;
  admin: pg.Pool;
  template: Promise<string>;
}

let server: Promise<Server> | undefined;
let counter = 0;
const byDataDir = new Map<string, Promise<string>>();
/** The same, once created (for the synchronous readers). */
const urlOfDataDir = new Map<string, string>();

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function asUser(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}

async function start(): Promise<Server> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('PostgreSQL is not installed (Debian package postgresql; or set TETHER_PG_BIN)');
  const user = asUser();
  const dir = mkdtempSync(join(tmpdir(), 'tether-pg-'));
  const data = join(dir, 'data');
  const password = randomBytes(12).toString('hex');
  writeFileSync(join(dir, 'pw'), `${password}\n`, { mode: 0o600 });
  if (user.uid !== undefined) chownSync(dir, user.uid, user.gid!), chownSync(join(dir, 'pw'), user.uid, user.gid!);
  chmodSync(dir, 0o700);
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-U', 'tether', '--pwfile', join(dir, 'pw'), '--auth=scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync'], {
    ...user,
    encoding: 'utf8',
  });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}${init.stdout}`);
  const port = await freePort();
  const proc = spawn(
    join(bin, 'postgres'),
    ['-D', data, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${dir}`, '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=400'],
    { ...user, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  process.on('exit', () => {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const deadline = Date.now() + 30_000;
  while (!out.includes('ready to accept connections')) {
    if (proc.exitCode !== null) throw new Error(`postgres exited (${proc.exitCode}):\n${out}`);
    if (Date.now() > deadline) throw new Error(`postgres not ready within 30 s:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const admin = new pg.Pool({ connectionString: url('postgres', port, password), max: 2 });
  admin.on('error', () => {}); // an idle connection ended by the server's shutdown
  const s: Server = { proc, dir, port, password, admin, template: Promise.resolve('') };
  s.template = makeTemplate(s);
  return s;
}

function url(db: string, port: number, password: string): string {
  return `postgres://tether:${password}@127.0.0.1:${port}/${db}`;
}

/** The migrated template every fresh database is copied from. */
async function makeTemplate(s: Server): Promise<string> {
  await s.admin.query('CREATE DATABASE tether_template');
  // Imported here so the harness loads without the control plane when it only needs a server.
  const { openPostgres } = await import('../../control-plane/db/postgres.ts');
  const { migrate } = await import('../../control-plane/db/database.ts');
  const { db } = openPostgres({ url: url('tether_template', s.port, s.password), poolSize: 1, statementTimeoutMs: 60_000 });
  try {
    await migrate(db);
  } finally {
    await db.destroy(); // no connection may stay on a template while it is copied
  }
  return 'tether_template';
}

function server$(): Promise<Server> {
  server ??= start();
  return server;
}

/** A fresh, migrated database; returns its URL (password included). */
export async function freshDatabase(opts: { empty?: boolean } = {}): Promise<string> {
  const s = await server$();
  const name = `t${process.pid}_${++counter}`;
  if (opts.empty) await s.admin.query(`CREATE DATABASE ${name}`);
  else await s.admin.query(`CREATE DATABASE ${name} TEMPLATE ${await s.template}`);
  return url(name, s.port, s.password);
}

/** One database per data folder: the same folder (a restarted server) gets the same database. */
export function databaseFor(dataDir: string): Promise<string> {
  let u = byDataDir.get(dataDir);
  if (!u) {
    u = freshDatabase().then((url) => (urlOfDataDir.set(dataDir, url), url));
    byDataDir.set(dataDir, u);
  }
  return u;
}

/** A query on the test server's maintenance database (e.g. to look at connections). */
export async function adminQuery<T extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<T[]> {
  const s = await server$();
  return (await s.admin.query<T>(text, values)).rows;
}

/** Stops the server (when this run started one) and removes its folder. */
export async function stopPostgres(): Promise<void> {
  if (!server) return;
  const s = await server.catch(() => undefined);
  server = undefined;
  byDataDir.clear();
  urlOfDataDir.clear();
  if (!s) return;
  await s.admin.end().catch(() => {});
  const exited = new Promise((r) => s.proc.once('close', r));
  s.proc.kill('SIGINT'); // fast shutdown
  await exited;
  rmSync(s.dir, { recursive: true, force: true });
}

// A root-level hook (registered while mocha loads the spec files that import this module): the
// server lives as long as the mocha run.
(globalThis as { after?: (fn: () => Promise<void>) => void }).after?.(stopPostgres);

/** Every row of every table of the data folder's database, as text (what a dump would hold). */
export async function databaseText(dataDir: string): Promise<string> {
  const url = byDataDir.get(dataDir);
  if (!url) throw new Error(`no PostgreSQL database for ${dataDir}`);
  const client = new pg.Client({ connectionString: await url });
  await client.connect();
  try {
    const tables = await client.query<{ t: string }>(`SELECT quote_ident(tablename) AS t FROM pg_tables WHERE schemaname = 'public'`);
    let text = '';
    for (const { t } of tables.rows) for (const r of (await client.query<{ row: string }>(`SELECT x::text AS row FROM ${t} x`)).rows) text += `${r.row}\n`;
    return text;
  } finally {
    await client.end();
  }
}

/**
 * Rows of a query on the data folder's database, synchronously (psql in a child process): for
 * the fault tests' checks, which read the SQLite file synchronously on the other pass.
 */
export function queryRowsSync<T>(dataDir: string, query: string): T[] {
  const url = urlOfDataDir.get(dataDir);
  if (!url) throw new Error(`no PostgreSQL database for ${dataDir}`);
  const r = spawnSync(join(postgresBinDir()!, 'psql'), ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', `SELECT COALESCE(json_agg(q), '[]') FROM (${query}) q`], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`psql failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as T[];
}
