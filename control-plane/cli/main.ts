#!/usr/bin/env node
/**
 * `tether`: the control plane server and the user CLI. Exit codes: 0 ok, 1 a failed job or a
 * refused request, 2 bad usage (including a request the control plane refuses as invalid, 400).
 *
 * Client commands answer in ~100 ms: this file imports only commander and the small HTTP client;
 * what one command needs (the server, YAML, the wire schemas, the bundle tooling) is imported in
 * that command. bin/tether runs the bundle of this file (dist/cli/tether.mjs, scripts/build.sh).
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { HttpClient, HttpError } from '../../common/http-client.ts';
import { errorMessage } from '../../common/errors.ts';
import type { AgentView, CommandView } from '../../common/wire.ts';
import { saveCredentials } from './credentials.ts';
import { printTable } from './table.ts';
import { UsageError, allPages, explainTransport, makeClient, readCa, resolveTarget, transportCode, type GlobalOpts, type Target } from './client.ts';
import { followJob } from './follow.ts';

/** The project's root (two folders above this file and dist/cli/tether.mjs alike) and its version. */
const ROOT = new URL('../../', import.meta.url);
const VERSION = ((): string => {
  try {
    return (JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

const program = new Command('tether')
  .description('Tether: a pull-based executor for Kubernetes tenants')
  .version(VERSION, '-V, --version', 'print the version')
  .option('--url <url>', 'control plane URL (env TETHER_URL)')
  .option('--api-key <key>', 'admin API token (env TETHER_API_KEY)')
  .option('--ca-file <file>', 'CA certificate to trust (env TETHER_CA_FILE)')
  .showHelpAfterError()
  .exitOverride();

/** Where the last client was pointed (for the hint when it cannot be reached). */
let lastTarget: Target | undefined;

function client(): HttpClient {
  lastTarget = resolveTarget(program.opts<GlobalOpts>());
  return makeClient(lastTarget);
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const c = client();
  try {
    return (await c.request<T>(method, path, body)).body;
  } finally {
    c.close();
  }
}

const out = (s: string): void => void process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const json = (v: unknown): void => out(JSON.stringify(v, null, 2));

function parseId(s: string): number {
  if (!/^[1-9][0-9]*$/.test(s)) throw new UsageError(`not a job id: ${s}`);
  return Number(s);
}

// ------------------------------------------------------------------ server

program
  .command('server')
  .description('run the control plane')
  .option('--data-dir <dir>', 'data folder (database, CA, admin token)', process.env.TETHER_DATA_DIR ?? './data')
  .option('--listen <host:port>', 'address to listen on', process.env.TETHER_LISTEN ?? '0.0.0.0:8443')
  .option('--admin-listen <host:port>', "the admin API and the CLI also on this address (HTTP/1.1 only, agents refused): its own accept queue, which a fleet filling the agents' cannot fill (env TETHER_ADMIN_LISTEN)", process.env.TETHER_ADMIN_LISTEN || undefined)
  .option('--san <name...>', 'extra DNS names/IPs for the server certificate (env TETHER_SAN, space-separated)', process.env.TETHER_SAN?.split(/[\s,]+/).filter(Boolean))
  .option('--lease-seconds <n>', 'lease held by an agent without a heartbeat', (v) => intArg(v, '--lease-seconds'))
  .option('--long-poll-seconds <n>', 'longest a poll is held', (v) => numArg(v, '--long-poll-seconds'))
  .option('--domain-root <root>', 'root of cluster domains (<cid>.<aid>.<root>)')
  .option('--retention <duration>', 'delete finished jobs and their logs this long after they finished, e.g. 30d, 12h (0d: keep them)', '30d')
  .option('--drift-interval <duration|off>', 'check each instance for drift this often (jittered ±20 %), e.g. 10m, 1h, or off; an instance may have its own (instances set)', '10m')
  .option('--allow-file-root <dir>', 'file:// bundle sources may be below this folder (repeatable; env TETHER_ALLOW_FILE_ROOTS, colon-separated)', (v: string, prev: string[]) => [...prev, v], [])
  .option('--allow-http', 'allow http:// bundle sources (https only otherwise)')
  .option('--allow-private-addresses', 'allow bundle sources on private, loopback and link-local addresses')
  .option('--tls-cert <file>', 'certificate chain for the public endpoint, served to clients asking for its names; reloaded on SIGHUP (env TETHER_TLS_CERT)', process.env.TETHER_TLS_CERT || undefined)
  .option('--tls-key <file>', 'private key of --tls-cert (env TETHER_TLS_KEY)', process.env.TETHER_TLS_KEY || undefined)
  .option('--durability <mode>', 'full: every answer waits until its write is on disk (survives a power cut); normal: survives kill -9 only (env TETHER_DURABILITY)', process.env.TETHER_DURABILITY || 'full')
  // No commander default from the environment: help would print the URL, password included.
  .option('--database <url>', 'PostgreSQL instead of SQLite in --data-dir: postgres://user:password@host:5432/db (env TETHER_DATABASE_URL, which keeps the password out of the process list)')
  .option('--ca-key-encryption-key-file <file>', 'replicas on PostgreSQL: file with the key (32 bytes, base64 or hex) that encrypts the shared CA key in the database (env TETHER_CA_KEY_ENCRYPTION_KEY holds the key itself)')
  .option('--database-pool-size <n>', 'PostgreSQL connections of this process (env TETHER_DATABASE_POOL_SIZE; default 10)', (v) => intArg(v, '--database-pool-size'))
  .option('--agent-rate-limits <spec>', "each agent's requests: off, or <class>=<per second>/<burst>,… with classes heartbeat, poll, result, logs, other (env TETHER_AGENT_RATE_LIMITS)", process.env.TETHER_AGENT_RATE_LIMITS || undefined)
  .action(async (o: { agentRateLimits?: string; caKeyEncryptionKeyFile?: string; database?: string; databasePoolSize?: number; dataDir: string; listen: string; adminListen?: string; san?: string[]; leaseSeconds?: number; longPollSeconds?: number; domainRoot?: string; allowFileRoot: string[]; allowHttp?: boolean; allowPrivateAddresses?: boolean; tlsCert?: string; tlsKey?: string; retention: string; durability: string; driftInterval: string }) => {
    process.umask(0o077); // the database, keys and tokens are for this user only
    // bin/tether preloads mimalloc into the control plane alone: not into the programs it runs.
    if (process.env.TETHER_PRELOADED_MALLOC && process.env.LD_PRELOAD === process.env.TETHER_PRELOADED_MALLOC) delete process.env.LD_PRELOAD;
    if (!o.tlsCert !== !o.tlsKey) throw new UsageError('--tls-cert and --tls-key go together (or TETHER_TLS_CERT and TETHER_TLS_KEY)');
    // SIGHUP (systemctl reload) reloads the certificate; until the server is up it is ignored (the start reads the files).
    let reload = () => {};
    process.on('SIGHUP', () => reload());
    // By URL, not a literal: the CLI bundle leaves the server (express, SQLite) out and loads the
    // sources only here.
    const { startControlPlane } = (await import(new URL('control-plane/app.ts', ROOT).href)) as typeof import('../app.ts');
    // An unhandled rejection or uncaught exception: logged under `err`, then exit 1 (the unit restarts it).
    const { createLogger } = (await import(new URL('common/logger.ts', ROOT).href)) as typeof import('../../common/logger.ts');
    const log = createLogger('tether-control-plane');
    ((await import(new URL('common/process-net.ts', ROOT).href)) as typeof import('../../common/process-net.ts')).installProcessNet(log);
    const { gcThreadsNiceFromEnv, lowerGcThreads } = (await import(new URL('control-plane/gc-threads.ts', ROOT).href)) as typeof import('../gc-threads.ts');
    const gcNice = gcThreadsNiceFromEnv(process.env.TETHER_GC_THREADS_NICE);
    if (typeof gcNice === 'object') throw new UsageError(gcNice.error);
    if (gcNice > 0) {
      const lowered = lowerGcThreads(gcNice);
      // A sandbox refusing setpriority (a seccomp filter without it) costs latency, not correctness: say so once.
      if (lowered.failed > 0) log.warn(lowered, "V8's helper threads could not be put below the event loop (setpriority refused?)");
      else log.debug(lowered, "V8's helper threads below the event loop");
    }
    const m = /^(.*):(\d{1,5})$/.exec(o.listen);
    if (!m) throw new UsageError(`--listen must be host:port (got ${o.listen})`);
    const host = m[1]!.replace(/^\[(.*)\]$/, '$1') || '0.0.0.0';
    const am = o.adminListen === undefined ? undefined : /^(.*):(\d{1,5})$/.exec(o.adminListen);
    if (o.adminListen !== undefined && (!am || Number(am[2]) > 65535)) throw new UsageError(`--admin-listen must be host:port (got ${o.adminListen})`);
    const admin = am ? { host: am[1]!.replace(/^\[(.*)\]$/, '$1') || '0.0.0.0', port: Number(am[2]) } : undefined;
    const fileRoots = [...(process.env.TETHER_ALLOW_FILE_ROOTS ?? '').split(':').filter((d) => d !== ''), ...o.allowFileRoot];
    for (const d of fileRoots) if (!isAbsolute(d)) throw new UsageError(`--allow-file-root takes an absolute folder (got ${d})`);
    const { durationSchema, parseDurationSeconds } = await import('../../common/wire.ts');
    if (!durationSchema.safeParse(o.retention).success) throw new UsageError(`--retention must be a duration like 30d, 12h or 0d (got ${o.retention})`);
    const { parseDriftInterval } = await import('../bundles/drift.plan.ts');
    const drift = parseDriftInterval(o.driftInterval);
    if (typeof drift === 'object' && 'error' in drift) throw new UsageError(drift.error);
    if (o.durability !== 'full' && o.durability !== 'normal') throw new UsageError(`--durability must be full or normal (got ${o.durability})`);
    const databaseUrl = o.database ?? (process.env.TETHER_DATABASE_URL || undefined);
    if (databaseUrl !== undefined && !/^postgres(ql)?:\/\/./i.test(databaseUrl)) throw new UsageError('--database (TETHER_DATABASE_URL) must be a postgres:// or postgresql:// URL');
    const envPool = process.env.TETHER_DATABASE_POOL_SIZE ? intArg(process.env.TETHER_DATABASE_POOL_SIZE, 'TETHER_DATABASE_POOL_SIZE') : undefined;
    const poolSize = o.databasePoolSize ?? envPool;
    let caKeyEncryptionKey = process.env.TETHER_CA_KEY_ENCRYPTION_KEY || undefined;
    if (o.caKeyEncryptionKeyFile) {
      try {
        caKeyEncryptionKey = readFileSync(o.caKeyEncryptionKeyFile, 'utf8');
      } catch (err) {
        throw new UsageError(`cannot read --ca-key-encryption-key-file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      }
    }
    const { parseAgentRates } = (await import(new URL('control-plane/http/agent-rate.ts', ROOT).href)) as typeof import('../http/agent-rate.ts');
    const agentRates = o.agentRateLimits === undefined ? undefined : parseAgentRates(o.agentRateLimits);
    if (agentRates !== undefined && agentRates !== false && 'error' in agentRates) throw new UsageError(agentRates.error);
    const cp = await startControlPlane({
      dataDir: o.dataDir,
      ...(agentRates !== undefined ? { agentRequestRates: agentRates } : {}),
      ...(caKeyEncryptionKey ? { caKeyEncryptionKey } : {}),
      ...(databaseUrl ? { databaseUrl } : {}),
      ...(poolSize ? { databasePoolSize: poolSize } : {}),
      host,
      port: Number(m[2]),
      ...(admin ? { admin } : {}),
      sans: o.san ?? [],
      ...(o.leaseSeconds ? { leaseSeconds: o.leaseSeconds } : {}),
      ...(o.longPollSeconds ? { longPollSeconds: o.longPollSeconds } : {}),
      ...(o.domainRoot ? { domainRoot: o.domainRoot } : {}),
      allowFileRoots: fileRoots,
      allowHttp: o.allowHttp === true,
      allowPrivateAddresses: o.allowPrivateAddresses === true,
      ...(o.tlsCert && o.tlsKey ? { tlsCertFile: o.tlsCert, tlsKeyFile: o.tlsKey } : {}),
      retentionSeconds: parseDurationSeconds(o.retention),
      driftIntervalSeconds: drift === 'off' ? 0 : drift.intervalSeconds,
      durability: o.durability,
    }, { log });
    reload = () => void cp.reloadTls();
    process.stderr.write(`tether: control plane listening on ${cp.url}${cp.adminUrl ? ` (admin API also on ${cp.adminUrl})` : ''} (data in ${o.dataDir}; CA ${o.dataDir}/ca.crt; admin token ${cp.adminTokenFile}; durability ${o.durability})\n`);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    // The drain (app.ts close()): held polls answered 503 draining, requests in flight finished,
    // the database closed. Bounded: a drain stuck past 15 s exits 1 rather than hang a restart.
    const bound = setTimeout(() => {
      process.stderr.write('tether: the drain did not finish within 15 s; exiting\n');
      process.exit(1);
    }, 15_000);
    bound.unref();
    await cp.close();
    // Stopped and flushed (the logger writes synchronously): leave now rather than wait for
    // whatever the runtime still holds, so a restart is not kept waiting.
    process.exit(0);
  });

// ------------------------------------------------------------------ login

program
  .command('login')
  .description('store the URL, API token and CA file for later commands (0600 file)')
  .action(() => {
    const g = program.opts<GlobalOpts>();
    const apiKey = g.apiKey ?? (process.env.TETHER_API_KEY || undefined);
    if (!apiKey) throw new UsageError('pass --api-key or set TETHER_API_KEY');
    // Absolute: the stored credentials are used from any folder.
    const caFile = g.caFile ?? (process.env.TETHER_CA_FILE || undefined);
    if (caFile) readCa(caFile);
    const file = saveCredentials({ url: g.url ?? (process.env.TETHER_URL || undefined), apiKey, caFile: caFile ? resolve(caFile) : undefined });
    process.stderr.write(`tether: credentials saved to ${file}\n`);
  });

// ------------------------------------------------------------------ clusters & tokens

const clusters = program.command('clusters').description('manage clusters');
clusters
  .command('create <cid>')
  .description('create a cluster (prints cid, account id and domain)')
  .option('--domain-root <root>', 'domain root (cluster domain becomes <cid>.<aid>.<root>)')
  .option('--json', 'print JSON')
  .action(async (cid: string, o: { domainRoot?: string; json?: boolean }) => {
    const c = await call<{ cid: string; aid: string; domain: string }>('POST', '/v1/clusters', { cid, ...(o.domainRoot ? { domainRoot: o.domainRoot } : {}) });
    if (o.json) json(c);
    else out(`${c.cid}\t${c.aid}\t${c.domain}`);
  });
clusters
  .command('list')
  .description('list clusters')
  .option('--json', 'print JSON')
  .action(async (o: { json?: boolean }) => {
    const { clusters: list } = await call<{ clusters: { cid: string; aid: string; domain: string; createdAt: string }[] }>('GET', '/v1/clusters');
    if (o.json) json(list);
    else printTable(['CID', 'AID', 'DOMAIN', 'CREATED'], list.map((c) => [c.cid, c.aid, c.domain, c.createdAt]));
  });

program
  .command('tokens')
  .description('bootstrap tokens for agents')
  .command('create')
  .description('print a one-time bootstrap token for an agent of a cluster')
  .requiredOption('--cluster <cid>', 'cluster the agent belongs to')
  .addOption(new Option('--role <role>', 'agent role').choices(['node', 'cluster-agent']).makeOptionMandatory())
  .addOption(new Option('--control-plane <0|1>', 'node is a control-plane node').choices(['0', '1']))
  .option('--ttl <duration>', 'lifetime, e.g. 15m, 1h', '1h')
  .action(async (o: { cluster: string; role: 'node' | 'cluster-agent'; controlPlane?: '0' | '1'; ttl: string }) => {
    const { parseDurationSeconds } = await import('../../common/duration.ts');
    let ttlSeconds: number;
    try {
      ttlSeconds = parseDurationSeconds(o.ttl);
    } catch {
      throw new UsageError(`--ttl must be a duration like 30m or 1h (got ${o.ttl})`);
    }
    if (o.role === 'cluster-agent' && o.controlPlane !== undefined) throw new UsageError('--control-plane applies to --role node only');
    const body = { cluster: o.cluster, role: o.role, ttlSeconds, ...(o.role === 'node' ? { controlPlane: o.controlPlane === '1' } : {}) };
    const t = await call<{ token: string }>('POST', '/v1/tokens', body);
    out(t.token);
  });

// ------------------------------------------------------------------ commands

program
  .command('submit')
  .description('submit a command from a YAML or JSON file; prints the job id')
  .requiredOption('-f, --file <file>', 'command file ("-" for stdin)')
  .action(async (o: { file: string }) => {
    let text: string;
    try {
      text = readFileSync(o.file === '-' ? 0 : o.file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${o.file}: ${errorMessage(err)}`);
    }
    const { default: YAML } = await import('yaml');
    let doc: unknown;
    try {
      doc = YAML.parse(text, { maxAliasCount: 100, prettyErrors: true });
    } catch (err) {
      throw new UsageError(`${o.file} is not valid YAML or JSON: ${errorMessage(err)}`);
    }
    const r = await call<{ id: number }>('POST', '/v1/commands', doc);
    out(String(r.id));
  });

const jobs = program.command('jobs').description('inspect jobs');
jobs
  .command('show <id>')
  .description("a job's state, attempts, outputs and error")
  .option('--json', 'print JSON')
  .action(async (id: string, o: { json?: boolean }) => {
    const c = await call<CommandView>('GET', `/v1/commands/${parseId(id)}`);
    if (o.json) return json(c);
    const target = c.target.node ? `${c.target.cluster}/${c.target.node}` : c.target.cluster;
    const rows: [string, string][] = [
      ['id', String(c.id)],
      ['type', c.type],
      ['target', target],
      ['state', c.state],
      ['attempts', `${c.attempts}/${c.maxAttempts}`],
      ['created', c.createdAt],
      ['claimed', c.claimedAt ?? '-'],
      ['finished', c.finishedAt ?? '-'],
    ];
    if (c.error) rows.push(['error', `${c.error.code}: ${c.error.message}`]);
    if (c.outputs) rows.push(['outputs', JSON.stringify(c.outputs)]);
    printTable(['FIELD', 'VALUE'], rows);
  });
jobs
  .command('list')
  .description('list jobs, newest first')
  .option('--json', 'print JSON')
  .option('--cluster <cid>', 'only this cluster')
  .option('--state <state>', 'only this state')
  .option('--limit <n>', 'at most n jobs', '50')
  .action(async (o: { json?: boolean; cluster?: string; state?: string; limit: string }) => {
    const q = new URLSearchParams({ limit: o.limit });
    if (o.cluster) q.set('cluster', o.cluster);
    if (o.state) q.set('state', o.state);
    const { commands } = await call<{ commands: CommandView[] }>('GET', `/v1/commands?${q}`);
    if (o.json) return json(commands);
    printTable(
      ['ID', 'TYPE', 'TARGET', 'STATE', 'ATTEMPTS', 'CREATED'],
      commands.map((c) => [String(c.id), c.type, c.target.node ? `${c.target.cluster}/${c.target.node}` : c.target.cluster, c.state, `${c.attempts}/${c.maxAttempts}`, c.createdAt]),
    );
  });

program
  .command('follow <id>')
  .description('stream a job\'s logs until it ends; exits 0 if it succeeded')
  .action(async (id: string) => {
    const n = parseId(id);
    const c = client();
    try {
      process.exitCode = await followJob(c, n, { stdout: (s) => void process.stdout.write(s), stderr: (s) => void process.stderr.write(s) });
    } finally {
      c.close();
    }
  });

program
  .command('wait')
  .description('wait until the control plane answers (and, for a local `tether server`, has written data/admin-token)')
  .option('--timeout <seconds>', 'give up after this many seconds', (v) => numArg(v, '--timeout'), 60)
  .action(async (o: { timeout: number }) => {
    const deadline = Date.now() + o.timeout * 1000;
    let said = false;
    for (;;) {
      let why: string;
      const t = resolveTarget(program.opts<GlobalOpts>());
      lastTarget = t;
      if (!t.apiKey && t.localToken) why = 'no data/admin-token yet';
      else {
        const c = makeClient(t);
        try {
          await c.request('GET', '/v1/whoami', undefined, { timeoutMs: 5000 });
          if (said) process.stderr.write(`tether: the control plane at ${t.url} is up\n`);
          return;
        } catch (err) {
          // Not listening yet, or going down/up: wait. Anything else (TLS trust, 401) is an answer.
          const code = err instanceof HttpError ? (err.status === 503 ? 'unavailable' : undefined) : transportCode(err);
          if (!code || !['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'unavailable'].includes(code)) throw err;
          why = code;
        } finally {
          c.close();
        }
      }
      if (Date.now() > deadline) throw new UsageError(`the control plane at ${t.url} did not come up within ${o.timeout} s (${why})`);
      if (!said) process.stderr.write(`tether: waiting for the control plane at ${t.url} (${why})\n`);
      said = true;
      await new Promise((r) => setTimeout(r, 250));
    }
  });

program
  .command('cancel <id>')
  .description('cancel a job')
  .action(async (id: string) => {
    const c = await call<CommandView>('POST', `/v1/commands/${parseId(id)}/cancel`);
    out(`${c.id}\t${c.state}${c.state === 'running' ? ' (cancellation requested)' : ''}`);
  });

// ------------------------------------------------------------------ agents

const agents = program.command('agents').description('inspect and revoke agents');
agents
  .command('list')
  .description('agents with their status from heartbeats (healthy, degraded, offline)')
  .option('--json', 'print JSON')
  .option('--cluster <cid>', 'only this cluster')
  .action(async (o: { json?: boolean; cluster?: string }) => {
    const list = await allPages<AgentView>(call, `/v1/agents${o.cluster ? `?cluster=${encodeURIComponent(o.cluster)}` : ''}`, 'agents');
    if (o.json) return json(list);
    printTable(
      ['ID', 'ROLE', 'CLUSTER', 'NODE', 'STATUS', 'LAST HEARTBEAT', 'VERSION'],
      list.map((a) => [a.id, a.role + (a.controlPlane ? ' (cp)' : ''), a.cid, a.nid ?? '-', a.revoked ? 'revoked' : a.status, a.secondsSinceHeartbeat === null ? 'never' : `${a.secondsSinceHeartbeat}s ago`, a.version ?? '-']),
    );
  });
agents
  .command('revoke <id>')
  .description("revoke an agent's certificate (it is refused from its next request)")
  .action(async (id: string) => {
    const a = await call<AgentView>('POST', `/v1/agents/${encodeURIComponent(id)}/revoke`);
    out(`${a.id}\trevoked`);
  });

// ------------------------------------------------------------------ bundles and instances

// Loaded only for these commands and the overall help: the bundle tooling (git, validation) is
// most of what the CLI would otherwise load.
if (['bundles', 'deploy', 'instances', 'help', undefined].includes(commandWord(process.argv.slice(2)))) {
  const { registerBundleCommands } = await import('./bundles.commands.ts');
  registerBundleCommands(program, { call, out, json, usage: (m) => new UsageError(m) });
}

if (['diff', 'help', undefined].includes(commandWord(process.argv.slice(2)))) {
  const { registerDiffCommand } = await import('./diff.commands.ts');
  registerDiffCommand(program, {
    call,
    out: (s) => void process.stdout.write(s),
    err: (s) => void process.stderr.write(s),
    follow: async (id) => {
      const c = client();
      try {
        return await followJob(c, id, { stdout: (s) => void process.stdout.write(s), stderr: (s) => void process.stderr.write(s) });
      } finally {
        c.close();
      }
    },
  });
}

if (['sync', 'pull', 'help', undefined].includes(commandWord(process.argv.slice(2)))) {
  const { registerSyncCommand } = await import('./sync.commands.ts');
  const { registerPullCommand } = await import('./pull.commands.ts');
  const write = (s: string): void => void process.stdout.write(s);
  registerPullCommand(program, { call, out, usage: (m) => new UsageError(m) });
  registerSyncCommand(program, {
    call,
    out: write,
    err: (s) => void process.stderr.write(s),
    usage: (m) => new UsageError(m),
    confirm: async (question) => {
      if (!process.stdin.isTTY) return undefined;
      const { createInterface } = await import('node:readline/promises');
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      try {
        return /^y(es)?$/i.test((await rl.question(question)).trim());
      } finally {
        rl.close();
      }
    },
    follow: async (id) => {
      const c = client();
      try {
        return await followJob(c, id, { stdout: write, stderr: (s) => void process.stderr.write(s) });
      } finally {
        c.close();
      }
    },
  });
}

// ------------------------------------------------------------------ backup and restore (local: the data folder)

if (['backup', 'restore', 'help', undefined].includes(commandWord(process.argv.slice(2)))) {
  const { registerBackupCommands } = await import('./backup.commands.ts');
  registerBackupCommands(program, { out, usage: (m) => new UsageError(m), root: ROOT });
}

// ------------------------------------------------------------------ vpn

const vpn = program.command('vpn').description("a cluster's WireGuard VPN (wg0 node mesh, wg1 user access)");
vpn
  .command('show <cid>')
  .description("a cluster's node addresses and user peers")
  .option('--json', 'print JSON')
  .action(async (cid: string, o: { json?: boolean }) => {
    const v = await call<{ nodes: { nid: string; wg0Address: string; wg1Address: string; endpoint: string | null }[]; users: { id: string; name: string; address: string }[] }>('GET', `/v1/clusters/${encodeURIComponent(cid)}/vpn`);
    if (o.json) return json(v);
    printTable(['NODE', 'WG0', 'WG1', 'ENDPOINT'], v.nodes.map((n) => [n.nid, n.wg0Address, n.wg1Address, n.endpoint ?? '-']));
    if (v.users.length) printTable(['USER', 'ID', 'ADDRESS'], v.users.map((u) => [u.name, u.id, u.address]));
  });
const vpnUsers = vpn.command('users').description('user peers on wg1');
vpnUsers
  .command('create <cid> <name>')
  .description('add a user peer and print its client configuration (a generated private key is shown once)')
  .option('--public-key <key>', "the user's own WireGuard public key (no private key is generated)")
  .action(async (cid: string, name: string, o: { publicKey?: string }) => {
    const r = await call<{ clientConfig: string }>('POST', `/v1/clusters/${encodeURIComponent(cid)}/vpn/users`, { name, ...(o.publicKey ? { publicKey: o.publicKey } : {}) });
    out(r.clientConfig);
  });
vpnUsers
  .command('delete <cid> <id>')
  .description('remove a user peer')
  .action(async (cid: string, id: string) => {
    await call('DELETE', `/v1/clusters/${encodeURIComponent(cid)}/vpn/users/${encodeURIComponent(id)}`);
    out(`${id}\tdeleted`);
  });

// ------------------------------------------------------------------ run

/** The first word that is not a global option (the command), if any. */
function commandWord(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--url' || a === '--api-key' || a === '--ca-file') i++;
    else if (a === '-h' || a === '--help') return 'help';
    else if (a === '-V' || a === '--version') return 'version';
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

function intArg(v: string, name: string): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`${name} must be a whole number`);
  return Number(v);
}
function numArg(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${name} must be a positive number`);
  return n;
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version exit 0; every other commander error is bad usage: 2, except for
    // `tether diff`, whose 2 means drift (a CI pipeline gates on it), so its bad usage is 1.
    process.exitCode = err.exitCode === 0 ? 0 : commandWord(process.argv.slice(2)) === 'diff' ? 1 : 2;
  } else if (err instanceof UsageError) {
    process.stderr.write(`tether: ${err.message}\n`);
    process.exitCode = 2;
  } else if (err instanceof HttpError) {
    process.stderr.write(`tether: ${err.code}: ${err.message}\n`);
    // 400: the control plane's validation refused what was typed (bad usage); other refusals are 1.
    process.exitCode = err.status === 400 ? 2 : 1;
  } else {
    const hint = lastTarget ? explainTransport(err, lastTarget) : undefined;
    process.stderr.write(`tether: ${hint ?? errorMessage(err)}\n`);
    process.exitCode = 1;
  }
}
