/**
 * `node bench/command-path.ts [--commands 2000] [--logs 10] [--json FILE]`: every SQL statement a
 * command costs on SQLite from its submit to its result, counted and timed (issue 18, "The command
 * path, statement by statement" in docs/performance.md).
 *
 * A control plane runs in this process (a fresh data folder, SQLite, durability FULL with group
 * commit, as `tether server` starts it), with one cluster agent on the agents' HTTP/2 client and an
 * admin client over HTTPS. Each command goes the way it goes in production: the agent's long-poll
 * is held, the command is submitted (`POST /v1/commands`), the held poll claims it, the agent
 * reports `succeeded` (`POST …/result`) and polls again. One command at a time, so every barrier
 * gets its own fsync (under load they share one). A second pass sends a log batch of `--logs`
 * lines per command before its result.
 *
 * Counted by wrapping better-sqlite3's Statement methods (run/get/all/iterate) for this process
 * only: BEGIN/COMMIT of better-sqlite3's transactions and Kysely's statements go through them too.
 * The time is the statement's own (the synchronous call: SQLite's work and the binding's), not
 * the whole request. The agents' request-rate limit is off (one agent polls hundreds of times a
 * second here; the limiter runs no SQL). Nothing here is loaded by the server.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import SQLite from 'better-sqlite3';
import { startControlPlane } from '../control-plane/app.ts';
import { HttpClient } from '../common/http-client.ts';
import { Http2Client } from '../common/http2-client.ts';
import { bootstrapAgent } from '../common/agent/agent-client.ts';
import { generateKeyPair } from '../common/csr.ts';
import { silentLogger } from '../common/logger.ts';
import { loadAverage } from './lib/util.ts';

const { values: flags } = parseArgs({ options: { commands: { type: 'string', default: '2000' }, logs: { type: 'string', default: '10' }, json: { type: 'string' } } });
const N = Number(flags.commands);
const LOG_LINES = Number(flags.logs);

// ------------------------------------------------------------------ the counter

interface Tally {
  n: number;
  ns: bigint;
}
let tallies = new Map<string, Tally>();
const probe = new SQLite(':memory:');
const Statement = Object.getPrototypeOf(probe.prepare('SELECT 1')) as Record<string, (...a: unknown[]) => unknown> & { source?: string };
probe.close();
for (const method of ['run', 'get', 'all', 'iterate'] as const) {
  const original = Statement[method]!;
  Statement[method] = function (this: { source: string }, ...args: unknown[]) {
    const t0 = process.hrtime.bigint();
    try {
      return original.apply(this, args);
    } finally {
      const key = this.source.replace(/\s+/g, ' ').trim();
      const t = tallies.get(key) ?? { n: 0, ns: 0n };
      t.n++;
      t.ns += process.hrtime.bigint() - t0;
      tallies.set(key, t);
    }
  };
}

// ------------------------------------------------------------------ the control plane and its clients

const dataDir = mkdtempSync(join(tmpdir(), 'tether-command-path-'));
const cp = await startControlPlane({ host: '127.0.0.1', port: 0, dataDir, agentRequestRates: false }, { log: silentLogger() });
const caPem = cp.ca.caCertPem;
const admin = new HttpClient({ baseUrl: cp.url, ca: caPem, bearerToken: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim(), timeoutMs: 30_000 });
await admin.request('POST', '/v1/clusters', { cid: 'bench1' });
const token = (await admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'bench1', role: 'cluster-agent' })).body.token;
const keys = generateKeyPair();
const identity = await bootstrapAgent({ url: cp.url, caPem, token, keys });
const agent = new Http2Client({ baseUrl: cp.url, ca: caPem, cert: identity.certificate, key: keys.privateKeyPem, timeoutMs: 30_000 });
const manifest = { manifests: 'apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n' };

type Polled = { command: { id: number; leaseId: string } | null };
async function heldPoll(): Promise<Polled> {
  const r = await agent.request<Polled>('GET', '/v1/agent/poll?wait=20');
  if (r.status !== 200) throw new Error(`poll: ${r.status}`);
  return r.body;
}

/** Returns the agent's next poll, held (wrapped: an async function would wait for a returned promise). */
async function oneCommand(poll: Promise<Polled>, logs: number): Promise<{ next: Promise<Polled> }> {
  // The poll is held before the submit arrives (as an idle agent's is).
  await new Promise((r) => setTimeout(r, 1));
  const s = await admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'bench1' }, type: 'manifest', spec: manifest, maxAttempts: 3 });
  if (s.status !== 202) throw new Error(`submit: ${s.status}`);
  let got = await poll;
  // A poll answered empty (woken for another reason) is made again, as the agent does.
  for (let k = 0; got.command === null && k < 5; k++) got = await heldPoll();
  if (!got.command || got.command.id !== s.body.id) throw new Error(`claimed ${got.command?.id ?? 'nothing'}, submitted ${s.body.id}`);
  const { id, leaseId } = got.command;
  if (logs > 0) {
    const lines = Array.from({ length: logs }, (_, i) => ({ stream: 'stdout', text: `line ${i} of a typical helm or tofu run, about eighty characters long ……` }));
    const l = await agent.request('POST', `/v1/agent/commands/${id}/logs`, { leaseId, lines });
    if (l.status !== 200) throw new Error(`logs: ${l.status}`);
  }
  const r = await agent.request('POST', `/v1/agent/commands/${id}/result`, { leaseId, outcome: 'succeeded', outputs: { bench: true } });
  if (r.status !== 200) throw new Error(`result: ${r.status}`);
  const next = heldPoll();
  next.catch(() => {});
  return { next };
}

interface Pass {
  logLines: number;
  commands: number;
  statements: { sql: string; perCommand: number; usPerCall: number; usPerCommand: number }[];
  statementsPerCommand: number;
  transactionsPerCommand: number;
  barrierCountsPerCommand: number;
  sqliteUsPerCommand: number;
}

async function pass(logs: number): Promise<Pass> {
  let poll = heldPoll();
  for (let i = 0; i < 200; i++) poll = (await oneCommand(poll, logs)).next; // warm-up: JIT, statement caches
  await new Promise((r) => setTimeout(r, 300));
  tallies = new Map();
  for (let i = 0; i < N; i++) poll = (await oneCommand(poll, logs)).next;
  const counted = tallies;
  tallies = new Map();
  // The last held poll: answered empty when its wait ends; not counted.
  void poll.catch(() => {});
  const statements = [...counted.entries()]
    .map(([sql, t]) => ({ sql, perCommand: round(t.n / N, 3), usPerCall: round(Number(t.ns) / t.n / 1000, 2), usPerCommand: round(Number(t.ns) / N / 1000, 2) }))
    .sort((a, b) => b.usPerCommand - a.usPerCommand);
  const sum = (f: (s: (typeof statements)[number]) => boolean, g: (s: (typeof statements)[number]) => number) => round(statements.filter(f).reduce((a, s) => a + g(s), 0), 3);
  return {
    logLines: logs,
    commands: N,
    statements,
    statementsPerCommand: sum(() => true, (s) => s.perCommand),
    transactionsPerCommand: sum((s) => /^BEGIN/i.test(s.sql), (s) => s.perCommand),
    barrierCountsPerCommand: sum((s) => /total_changes/i.test(s.sql), (s) => s.perCommand),
    sqliteUsPerCommand: sum(() => true, (s) => s.usPerCommand),
  };
}

function round(x: number, d: number) {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

const load0 = loadAverage();
const out: { load: { start: number[]; end: number[] }; passes: Pass[] } = { load: { start: load0, end: [] }, passes: [] };
try {
  for (const logs of [0, LOG_LINES]) out.passes.push(await pass(logs));
} finally {
  agent.close();
  admin.close();
  await cp.close();
  rmSync(dataDir, { recursive: true, force: true });
}
out.load.end = loadAverage();
for (const p of out.passes) {
  process.stdout.write(`\n${p.commands} commands, ${p.logLines} log lines each: ${p.statementsPerCommand} statements, ${p.transactionsPerCommand} explicit transactions, ${p.barrierCountsPerCommand} total_changes() per command; ${p.sqliteUsPerCommand} µs in SQLite per command\n`);
  process.stdout.write('| per command | µs per call | µs per command | statement |\n|---|---|---|---|\n');
  for (const s of p.statements) process.stdout.write(`| ${s.perCommand} | ${s.usPerCall} | ${s.usPerCommand} | \`${s.sql.slice(0, 160)}\` |\n`);
}
process.stdout.write(`\nload average ${out.load.start.join(' ')} → ${out.load.end.join(' ')}\n`);
if (flags.json) writeFileSync(flags.json, `${JSON.stringify(out, null, 2)}\n`);
