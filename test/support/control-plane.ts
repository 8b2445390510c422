/**
 * Test helpers: a real control plane (real SQLite file in a temp folder, real HTTPS on loopback
 * with certificates from its own CA), in-process or as a child process, plus an admin client.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { startControlPlane, type ControlPlane, type StartOptions } from '../../control-plane/app.ts';
import { HttpClient } from '../../common/http-client.ts';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { REDACT_PATHS, silentLogger, type Logger } from '../../common/logger.ts';
import { generateKeyPair, type KeyPair } from '../../common/csr.ts';
import { bootstrapAgent, AgentClient } from '../../common/agent/agent-client.ts';
import type { BootstrapResponse } from '../../common/wire.ts';
import { databaseFor, onPostgres } from './postgres.ts';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');

export function tempDir(prefix = 'tether-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface TestControlPlane {
  cp: ControlPlane;
  url: string;
  caPem: string;
  dataDir: string;
  adminToken: string;
  admin: HttpClient;
  aid: string;
  createCluster(cid: string): Promise<void>;
  bootstrapToken(cid: string, role: 'node' | 'cluster-agent', controlPlane?: boolean): Promise<string>;
  /** Bootstraps an agent and returns an mTLS client for it. */
  agent(cid: string, role: 'node' | 'cluster-agent', opts?: { nodeName?: string; controlPlane?: boolean }): Promise<TestAgent>;
  close(): Promise<void>;
}

export interface TestAgent {
  client: AgentClient;
  identity: BootstrapResponse;
  keys: KeyPair;
}

export async function startTestControlPlane(
  config: Partial<Parameters<typeof startControlPlane>[0]> = {},
  opts: StartOptions = {},
): Promise<TestControlPlane> {
  const dataDir = config.dataDir ?? tempDir();
  // TETHER_TEST_DATABASE=postgres: the same server on PostgreSQL, one database per data folder.
  const database = onPostgres && !config.databaseUrl ? { databaseUrl: await databaseFor(resolve(dataDir)) } : {};
  const cp = await startControlPlane({ host: '127.0.0.1', port: 0, ...database, ...config, dataDir }, { log: silentLogger(), ...opts });
  const adminToken = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
  const caPem = cp.ca.caCertPem;
  const admin = new HttpClient({ baseUrl: cp.url, ca: caPem, bearerToken: adminToken });
  const { aid } = (await admin.request<{ aid: string }>('GET', '/v1/whoami')).body;
  const t: TestControlPlane = {
    cp,
    url: cp.url,
    caPem,
    dataDir,
    adminToken,
    admin,
    aid,
    async createCluster(cid) {
      await admin.request('POST', '/v1/clusters', { cid });
    },
    async bootstrapToken(cid, role, controlPlane) {
      const body = { cluster: cid, role, ...(role === 'node' ? { controlPlane: controlPlane ?? false } : {}) };
      return (await admin.request<{ token: string }>('POST', '/v1/tokens', body)).body.token;
    },
    async agent(cid, role, o = {}) {
      const token = await t.bootstrapToken(cid, role, o.controlPlane);
      const keys = generateKeyPair();
      const identity = await bootstrapAgent({ url: cp.url, caPem, token, keys, ...(o.nodeName ? { nodeName: o.nodeName } : {}) });
      return { identity, keys, client: new AgentClient(cp.url, { certPem: identity.certificate, keyPem: keys.privateKeyPem, caPem }) };
    },
    async close() {
      admin.close();
      await t.cp.close(); // t.cp, not cp: a test may have restarted it
    },
  };
  return t;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** The project's Node 24 running a TypeScript entry point of the repo. */
export function nodeArgs(entry: string, args: string[]): [string, string[]] {
  return [process.execPath, [join(REPO_ROOT, entry), ...args]];
}

/** Starts `tether server` as a child process and waits until it is ready. */
export async function spawnControlPlane(dataDir: string, port: number, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<{ proc: ChildProcess; url: string; output: () => string }> {
  const [cmd, args] = nodeArgs('control-plane/cli/main.ts', ['server', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, ...extra]);
  // TETHER_TEST_DATABASE=postgres: on PostgreSQL (through the environment, as an operator would pass it).
  const database = onPostgres && !extra.includes('--database') && !env.TETHER_DATABASE_URL ? { TETHER_DATABASE_URL: await databaseFor(resolve(dataDir)) } : {};
  const proc = spawn(cmd, args, { env: { ...process.env, TETHER_LOG_LEVEL: 'info', ...database, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const url = `https://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  while (!out.includes('control plane ready')) {
    if (proc.exitCode !== null) throw new Error(`control plane exited (${proc.exitCode}):\n${out}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`control plane not ready within 20 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, url, output: () => out };
}

export async function stopProcess(proc: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  // 'close' (not 'exit'): the process has ended and its pipes are closed.
  const exited = new Promise<number | null>((r) => proc.once('close', (code) => r(code)));
  if (proc.exitCode !== null || proc.signalCode !== null) {
    proc.stdout?.destroy();
    proc.stderr?.destroy();
    return proc.exitCode;
  }
  proc.kill(signal);
  return exited;
}

/** A free TCP port on loopback. */
export async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolvePort, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolvePort(p));
    });
  });
}

/** Polls `fn` until it returns a truthy value or the deadline passes (for asynchronous effects, not timing). */
export async function eventually<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A control-plane logger that keeps every line (debug and up) in memory, redaction as in production. */
export function captureLogger(): { log: Logger; text(): string } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString('utf8'));
      done();
    },
  });
  const log = pino({ level: 'debug', redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, sink);
  return { log, text: () => chunks.join('') };
}
