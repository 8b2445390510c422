/**
 * The control plane's composition root: opens storage, loads the PKI, wires the services and
 * serves the admin and agent APIs on one HTTPS port (client certificates requested, verified
 * per route).
 */
import { mkdirSync, chmodSync } from 'node:fs';
import { join, resolve } from 'node:path';
import express from 'express';
import { systemClock, type Clock } from '../common/clock.ts';
import { createLogger, type Logger } from '../common/logger.ts';
import { writeFileAtomic } from '../common/files.ts';
import { TetherError, badRequest, errorMessage, notFound } from '../common/errors.ts';
import { COMMAND_STATES, HEALTHY_BELOW_S, OFFLINE_FROM_S } from '../common/wire.ts';
import { migrate, migrationStatus, type Db } from './db/database.ts';
import { commitIsDurable, openDurability, type Durability } from './db/durability.ts';
import { openStorage } from './db/storage.ts';
import { databaseClock } from './db/clock.ts';
import { lockDataDir } from './db/backup.ts';
import { countByState } from './db/commands.repository.ts';
import { countAgentsByHeartbeatAge } from './db/agents.repository.ts';
import { pingDatabase, queuedTargets } from './db/replicas.repository.ts';
import { loadOrCreatePki, type CaMaterial } from './pki/ca.ts';
import { loadOrCreateSharedCa, loadOrCreateTicketKeys as loadOrCreateSharedTicketKeys, parseKeyEncryptionKey } from './pki/shared-ca.ts';
import { loadPublicCertificate, type PublicCertificate } from './pki/public-cert.ts';
import { parseConfig, serverSans, type Config } from './config.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { AccountsService } from './accounts/accounts.service.ts';
import { IdentityService } from './identity/identity.service.ts';
import { QueueService } from './queue/queue.service.ts';
import { Dispatcher } from './queue/dispatcher.ts';
import type { Notifier } from './queue/notifier.ts';
import { CommandRelay } from './queue/notifier.relay.ts';
import { PostgresNotifier } from './queue/notifier.postgres.ts';
import { healthRoutes, ReadinessCheck } from './http/health.routes.ts';
import { Retention } from './queue/retention.ts';
import { adminRoutes, submitCommandRoute } from './http/admin.routes.ts';
import { VpnService } from './vpn/vpn.service.ts';
import { vpnAdminRoutes } from './http/vpn.routes.ts';
import { BundlesService } from './bundles/bundles.service.ts';
import { GitCache } from './bundles/git-cache.ts';
import { realRoots } from './bundles/fetch-policy.ts';
import { bundleRoutes, instanceRoutes } from './http/bundles.routes.ts';
import { DriftScheduler } from './bundles/drift.scheduler.ts';
import { countInstancesBySyncStatus } from './db/drift.repository.ts';
import { AgentApi, bootstrapRoutes } from './http/agent.routes.ts';
import { ApiServer } from './http/server.ts';
import { errorHandler, notFoundRoute } from './http/errors.ts';
import { openapiDocument } from './http/openapi.ts';
import { FailureLimiter, SharedFailureLimiter } from './http/rate-limit.ts';
import { AgentRateLimiter } from './http/agent-rate.ts';
import { SharedLogQuota } from './queue/log-quota.ts';
import { requireAdmin } from './http/auth.ts';
import { BodyGate } from './http/body-gate.ts';
import { methodNotAllowed } from './http/methods.ts';
import { durableAcks } from './http/durable-acks.ts';
import { loadOrCreateMetricsToken, metricsRoute } from './http/metrics.routes.ts';
import { SessionsService, deriveSessionKey, loadOrCreateSessionKey } from './sessions/sessions.service.ts';
import { LOGIN_BODY_LIMIT_BYTES, isLogin, loginLimit, sessionRoutes } from './http/sessions.routes.ts';
import { consoleRoutes } from './http/console.routes.ts';

export interface ControlPlane {
  url: string;
  port: number;
  /** `--admin-listen`'s URL (the admin API on a listening socket of its own), when configured. */
  adminUrl?: string;
  config: Config;
  db: Db;
  ca: CaMaterial;
  accounts: AccountsService;
  /** The web console's sessions (tests call sessions.sweep()). */
  sessions: SessionsService;
  identity: IdentityService;
  queue: QueueService;
  dispatcher: Dispatcher;
  /** Deletes finished commands and their logs past `retentionSeconds` (sweeps on a timer; tests call sweep()). */
  retention: Retention;
  /** Scheduled drift checks and autoSync (ticks on a timer unless StartOptions.driftScheduler is false; tests call tick()). */
  drift: DriftScheduler;
  metrics: Metrics;
  /** Open TLS connections, how many of them speak HTTP/2 (agents), how many are unauthenticated. */
  connections(): { tls: number; http2: number; unauthenticated: number };
  /** Path of the initial admin token file, when this start created it. */
  adminTokenFile: string;
  /** Reads --tls-cert/--tls-key again (SIGHUP); a bad pair is refused and the one in service kept. */
  reloadTls(): TlsReload;
  /** Path of the token that reads /metrics (created on first start). */
  metricsTokenFile: string;
  close(): Promise<void>;
}

export type TlsReload =
  | { outcome: 'reloaded'; names: string[]; notAfter: string }
  | { outcome: 'not_configured' }
  | { outcome: 'refused'; message: string };

export interface StartOptions {
  clock?: Clock;
  log?: Logger;
  /** Run the lease reaper on a timer (tests with a manual clock call queue.reapExpired() instead). */
  reaper?: boolean;
  /** Run the drift scheduler on a timer (tests with a manual clock call drift.tick() instead). */
  driftScheduler?: boolean;
  /** Wake-ups to and from other replicas (queue/notifier.ts); default: this server alone. */
  notifier?: Notifier;
  /** How often held polls re-check the queue when replicas share it (default 5 s; tests set it long to see NOTIFY alone at work). */
  sweepMs?: number;
}

export async function startControlPlane(input: Parameters<typeof parseConfig>[0], opts: StartOptions = {}): Promise<ControlPlane> {
  const config = parseConfig(input);
  let clock = opts.clock ?? systemClock;
  const log = opts.log ?? createLogger('tether-control-plane');
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  if (!config.tlsCertFile !== !config.tlsKeyFile) throw badRequest('--tls-cert and --tls-key go together', 'invalid_tls_certificate');
  // One server per data folder (the queue's wake-ups are in-process); `tether restore` checks it too.
  const lock = lockDataDir(dataDir);
  if (!lock) throw new TetherError('server_running', `another tether server (or a restore) is running on ${dataDir}`, { status: 409 });

  const storage = openStorage({ ...config, dataDir }, (err) => log.warn({ err }, 'an idle database connection failed; the pool replaces it'));
  const { db } = storage;
  if (storage.dialect === 'postgres') log.info({ database: storage.url, poolSize: config.databasePoolSize }, 'storage: PostgreSQL');
  else storage.checkpointer.on('failed', (err) => log.error({ err }, 'the checkpoint worker failed; checkpoints run on the main thread again'));
  let durability: Durability | undefined;
  const failedStart = async (err: unknown): Promise<never> => {
    durability?.close();
    await storage.close().catch(() => {});
    lock.release();
    throw err;
  };
  const applied = await migrate(db).catch(failedStart);
  if (applied.length) log.info({ migrations: applied }, 'database migrated');
  // Every answer waits until what it acknowledges is on disk (full), or not (normal: kill -9 safe
  // only). A PostgreSQL commit is durable when it returns.
  try {
    durability = storage.dialect === 'sqlite' ? openDurability({ db, sqlite: storage.sqlite, file: storage.file, mode: config.durability }) : commitIsDurable;
  } catch (err) {
    await failedStart(err);
  }
  const barrier = durability!;
  // On PostgreSQL, replicas share rows: time is the database's (db/clock.ts); a test's clock is kept.
  const dbClock = storage.dialect === 'postgres' && !opts.clock ? await databaseClock(db, log).catch(failedStart) : undefined;
  if (dbClock) clock = dbClock;
  // Replicas on PostgreSQL with the operator's key share one CA and one set of ticket keys
  // (pki/shared-ca.ts); otherwise both stay in the data folder, as on SQLite.
  let ca: CaMaterial & { created: boolean };
  let ticketKeys: { keys: Buffer; version: number } | undefined;
  if (storage.dialect === 'postgres' && config.caKeyEncryptionKey) {
    try {
      const shared = await loadOrCreateSharedCa(db, parseKeyEncryptionKey(config.caKeyEncryptionKey), dataDir, serverSans(config), clock.now());
      if (shared.adopted) log.info('this data folder\'s CA is now the shared one (stored encrypted in the database)');
      ca = shared;
      ticketKeys = await loadOrCreateSharedTicketKeys(db, clock.now());
    } catch (err) {
      return failedStart(err);
    }
  } else {
    if (storage.dialect === 'postgres') log.warn('PostgreSQL without a CA key encryption key: the CA stays in this data folder, so another replica would have a CA of its own (docs/control-plane.md, High availability)');
    ca = loadOrCreatePki(dataDir, serverSans(config), clock.now());
  }
  if (ca.created) log.info({ caFile: join(dataDir, 'ca.crt') }, 'certificate authority created');
  const loadPublic = (): PublicCertificate | undefined =>
    config.tlsCertFile && config.tlsKeyFile ? loadPublicCertificate(config.tlsCertFile, config.tlsKeyFile, [ca.caCertPem], clock.now()) : undefined;
  let publicCert: PublicCertificate | undefined;
  try {
    publicCert = loadPublic(); // a bad pair stops the start
  } catch (err) {
    await failedStart(err);
  }

  const accounts = new AccountsService({ db, clock, config, log });
  // Replicas sharing a CA share the console's session key too (derived from the operator's key).
  const sessionKey = storage.dialect === 'postgres' && config.caKeyEncryptionKey ? deriveSessionKey(parseKeyEncryptionKey(config.caKeyEncryptionKey)) : loadOrCreateSessionKey(join(dataDir, 'session-key'));
  const sessions = new SessionsService({ db, clock, config, log, accounts, key: sessionKey });
  // The VPN is built after the queue it submits to; identity calls it only once requests flow.
  const identity = new IdentityService({
    db,
    clock,
    config,
    ca,
    log,
    onNodeJoined: (n) => vpn.onNodeJoined(n),
    onNodeLeft: (n) => vpn.onNodeLeft(n),
    sharedRenewals: storage.dialect === 'postgres',
    // A revoked agent's held polls are answered (403) and its connections closed now; the
    // commands it held are requeued now rather than when their leases would have run out.
    // On every replica (dispatcher.onRevoked below).
    onAgentRevoked: (agentId) => {
      dispatcher.revokeAgent(agentId);
      queue.reapExpired().catch((err: unknown) => log.error({ err }, 'lease reaper failed'));
    },
  });
  // Replicas on one PostgreSQL tell each other of new work, cancellations, revocations and log lines.
  let notifier = opts.notifier;
  if (!notifier && storage.dialect === 'postgres' && config.databaseUrl) {
    const pgNotifier = new PostgresNotifier({ url: config.databaseUrl, log });
    await pgNotifier.start().catch(failedStart);
    notifier = pgNotifier;
  }
  const dispatcher = new Dispatcher(notifier ? { notifier } : {});
  dispatcher.onRevoked((agentId) => {
    identity.forgetCertificates();
    agentApi.disconnect(agentId);
  });
  // A revocation notice from another replica may be lost: the certificate cache is dropped when
  // the notification connection comes back, and every 30 s anyway (a lookup per agent and 30 s).
  let certCacheExpiry: NodeJS.Timeout | undefined;
  if (dispatcher.notifier.shared) {
    dispatcher.onResync(() => identity.forgetCertificates());
    certCacheExpiry = setInterval(() => identity.forgetCertificates(), 30_000);
    certCacheExpiry.unref();
  }
  const metrics = createMetrics({
    commandsByState: async () => ({
      ...Object.fromEntries(COMMAND_STATES.map((s) => [s, 0])),
      ...Object.fromEntries((await countByState(db)).map((r) => [r.state, Number(r.n)])),
    }),
    // agentStatus(): healthy while the age is < HEALTHY_BELOW_S, offline from OFFLINE_FROM_S.
    agentsByStatus: async () => {
      const now = clock.now();
      return countAgentsByHeartbeatAge(db, now - HEALTHY_BELOW_S * 1000, now - OFFLINE_FROM_S * 1000);
    },
    connections: () => server.connections,
    heldPolls: () => dispatcher.held,
    instancesBySyncStatus: async () => Object.fromEntries((await countInstancesBySyncStatus(db)).map((r) => [r.status, Number(r.n)])),
    durability: () => barrier.stats(),
  });
  // Replicas on PostgreSQL count the rate limits together in the database; one SQLite process in memory.
  const shared = storage.dialect === 'postgres';
  const logRate = shared ? new SharedLogQuota(db, config.logBytesPerAgentPerSecond, () => clock.now()) : undefined;
  const queue = new QueueService({ db, clock, config, dispatcher, metrics, log, durability: barrier, ...(logRate ? { logRate } : {}) });
  // Lines and states written through another replica, for this replica's followers.
  const relay = new CommandRelay({ db, events: queue.events, log });
  dispatcher.onCommandChanged((id, fromLogId) => relay.poke(id, fromLogId));
  const vpn = new VpnService({ db, clock, queue, log });
  const bundleCache = join(dataDir, 'bundle-cache');
  const fetchPolicy = { allowHttp: config.allowHttp, allowPrivateAddresses: config.allowPrivateAddresses, fileRoots: realRoots(config.allowFileRoots), deniedPaths: realRoots([dataDir]) };
  const cache = new GitCache(bundleCache, { policy: fetchPolicy, environment: 'isolated', timeoutMs: config.gitTimeoutSeconds * 1000, log });
  const bundles: BundlesService = new BundlesService({
    db,
    clock,
    log,
    queue,
    cache,
    cacheIdleMs: config.bundleCacheIdleDays * 86_400_000,
    driftIntervalSeconds: config.driftIntervalSeconds,
    onCheckRecorded: (r): Promise<void> => drift.recorded(r),
  });
  const drift: DriftScheduler = new DriftScheduler({
    db,
    clock,
    log,
    queue,
    bundles,
    metrics,
    settings: { defaultIntervalSeconds: config.driftIntervalSeconds, checksPerTick: config.driftChecksPerTick },
    tickMs: config.driftTickMs,
  });

  const adminTokenFile = join(dataDir, 'admin-token');
  if (!(await accounts.hasAccounts())) {
    const { aid, token } = await accounts.createAccount('default');
    writeFileAtomic(adminTokenFile, `${token}\n`, 0o600);
    log.info({ aid, adminTokenFile }, 'initial account created; its admin API token is in adminTokenFile');
  }

  // Bodies are read only after the request is authenticated, and only so many at once (body-gate.ts).
  const admin = requireAdmin(accounts, sessions);
  const gate = new BodyGate(config.bodyParsesMax);
  const json = gate.json(config.bodyLimitBytes);
  const bootstrapJson = gate.json(config.bootstrapBodyLimitBytes);
  const loginJson = gate.json(LOGIN_BODY_LIMIT_BYTES);
  const loginLimiter = shared ? new SharedFailureLimiter(db, 'login', config.loginFailuresPerMinute, () => clock.now()) : new FailureLimiter(config.loginFailuresPerMinute, () => clock.now());
  const checkLogin = loginLimit(loginLimiter);
  const isBootstrap = (req: express.Request) => req.path === '/bootstrap';

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // /healthz and /readyz for load balancers: no authentication, no body.
  let draining = false;
  app.use(healthRoutes(new ReadinessCheck({ draining: () => draining, ping: () => pingDatabase(db), migrationStatus: () => migrationStatus(db) })));
  // The API's OpenAPI document (public: it describes the API, holds no data), built once.
  let openapi: string | undefined;
  app.get('/v1/openapi.json', (_req, res) => {
    openapi ??= JSON.stringify(openapiDocument());
    res.type('application/json').send(openapi);
  });
  app.get('/metrics', metricsRoute(metrics, loadOrCreateMetricsToken(join(dataDir, 'metrics-token'))));
  // Every /v1 route but bootstrap and sign-in (whose bodies are their credentials) needs the API
  // token or a console session, checked before anything reads the body; an authenticated
  // connection leaves the unauthenticated count.
  app.use('/v1', (req, res, next) => (isBootstrap(req) ? next() : isLogin(req) ? checkLogin(req, res, next) : admin(req, res, next)));
  app.use('/v1', durableAcks(barrier));
  app.use('/v1', (req, res, next) => {
    if (res.locals.aid) server.guard.authenticated(req.socket);
    (isBootstrap(req) ? bootstrapJson : isLogin(req) ? loginJson : json)(req, res, next);
  });
  app.post('/v1/commands', submitCommandRoute(queue)); // before the routers it would walk (admin.routes.ts)
  app.use('/v1', sessionRoutes({ sessions, limiter: loginLimiter }));
  app.use('/v1', bootstrapRoutes({ identity, limiter: shared ? new SharedFailureLimiter(db, 'bootstrap', config.bootstrapFailuresPerMinute, () => clock.now()) : new FailureLimiter(config.bootstrapFailuresPerMinute) }));
  app.use('/v1/clusters/:cid/vpn', vpnAdminRoutes({ accounts, vpn }));
  app.use('/v1/bundles', bundleRoutes({ accounts, bundles }));
  app.use('/v1/instances', instanceRoutes({ accounts, bundles }));
  app.use('/v1', adminRoutes({ accounts, identity, queue }));
  app.use(consoleRoutes()); // the web console: GET/HEAD outside /v1, /healthz, /metrics (console.routes.ts)
  app.use(methodNotAllowed(app));
  app.use(notFoundRoute);
  app.use(errorHandler(log, { hide: [dataDir] }));

  // The agent API (/v1/agent/…) is served outside Express, over HTTP/1.1 and HTTP/2 (server.ts).
  const rate = config.agentRequestRates === false ? undefined : new AgentRateLimiter(config.agentRequestRates, { onRefused: (c) => metrics.agentRateLimited.inc({ class: c }) });
  const agentApi = new AgentApi({ identity, queue, vpn, config, log, durability: barrier, rate });
  const server = new ApiServer({
    key: ca.serverKeyPem,
    cert: ca.serverCertPem,
    ca: [ca.caCertPem],
    app,
    agentApi,
    ticketKeyFile: join(dataDir, 'tls-ticket-keys'),
    ...(ticketKeys ? { ticketKeys: ticketKeys.keys } : {}),
    limits: config,
    log,
    now: () => clock.now(),
  });
  const logPublic = (p: PublicCertificate, msg: string) => log.info({ names: p.names, issuer: p.issuer, notAfter: p.notAfter, fingerprint256: p.fingerprint256 }, msg);
  if (publicCert) {
    server.setPublicCertificate(publicCert);
    logPublic(publicCert, 'public certificate in service for clients asking for its names');
  }
  const port = await server.listen(config.port, config.host).catch(failedStart);
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  // --admin-listen: the admin API on a listening socket of its own (server.ts, listenAdmin).
  let adminUrl: string | undefined;
  if (config.admin) {
    const adminPort = await server.listenAdmin(config.admin.port, config.admin.host).catch(async (err: unknown) => {
      await server.close(0).catch(() => {});
      return failedStart(err);
    });
    const h = config.admin.host === '0.0.0.0' || config.admin.host === '::' ? '127.0.0.1' : config.admin.host;
    adminUrl = `https://${h.includes(':') ? `[${h}]` : h}:${adminPort}`;
  }

  // The bundle cache is collected at start and hourly (sources replaced, entries unused for long).
  const collectCache = () => void bundles.collectCache().catch((err: unknown) => log.error({ err }, 'bundle cache collection failed'));
  collectCache();
  const cacheCollector = setInterval(collectCache, 3_600_000);
  cacheCollector.unref();

  // Shared ticket keys: looked at every minute, rotated by the first replica to find them 12 h old.
  let ticketRefresh: NodeJS.Timeout | undefined;
  if (ticketKeys) {
    let current = ticketKeys;
    ticketRefresh = setInterval(() => {
      loadOrCreateSharedTicketKeys(db, clock.now())
        .then((t) => {
          if (t.version === current.version) return;
          current = t;
          server.setTicketKeys(t.keys);
          log.info({ version: t.version }, 'TLS session-ticket keys replaced (shared by the replicas)');
        })
        .catch((err: unknown) => log.warn({ err }, 'cannot read the shared TLS ticket keys; keeping the current ones'));
    }, 60_000);
    ticketRefresh.unref();
  }

  // Replicas: a wake-up from another replica may be lost; every few seconds one query finds the
  // targets with queued work and a poll held here for each looks (queue/dispatcher.ts sweep()).
  let sweeper: NodeJS.Timeout | undefined;
  if (dispatcher.notifier.shared) {
    let sweeping = false;
    sweeper = setInterval(() => {
      if (sweeping || dispatcher.held === 0) return;
      sweeping = true;
      queuedTargets(db)
        .then((targets) => dispatcher.sweep(targets.map((t) => Dispatcher.key(t.aid, t.cid, t.nid))))
        .catch((err: unknown) => log.warn({ err }, 'queue sweep failed'))
        .finally(() => {
          sweeping = false;
        });
    }, opts.sweepMs ?? 5000);
    sweeper.unref();
  }

  let reaper: NodeJS.Timeout | undefined;
  if (opts.reaper !== false) {
    reaper = setInterval(() => {
      queue.reapExpired().catch((err) => log.error({ err }, 'lease reaper failed'));
    }, Math.min(1000, config.leaseSeconds * 250));
    reaper.unref();
  }

  const retention = new Retention({ db, clock, log, retentionSeconds: config.retentionSeconds, sweepRateLimits: shared });
  retention.start();
  sessions.start();
  if (opts.driftScheduler !== false) drift.start();

  const url = `https://${host}:${port}`;
  log.info(
    { url, listen: `${config.host}:${port}`, ...(adminUrl ? { adminUrl } : {}), dataDir, caFile: join(dataDir, 'ca.crt'), durability: config.durability, durabilityMethod: barrier.method },
    'control plane ready',
  );

  return {
    url,
    port,
    ...(adminUrl ? { adminUrl } : {}),
    config,
    db,
    ca,
    accounts,
    sessions,
    identity,
    queue,
    dispatcher,
    retention,
    drift,
    metrics,
    adminTokenFile,
    metricsTokenFile: join(dataDir, 'metrics-token'),
    connections: () => server.connections,
    reloadTls(): TlsReload {
      let next: PublicCertificate | undefined;
      try {
        next = loadPublic();
      } catch (err) {
        log.error({ err }, 'public certificate refused; the one in service is kept');
        return { outcome: 'refused', message: errorMessage(err) };
      }
      if (!next) {
        log.info('reload: no --tls-cert/--tls-key configured, nothing to reload');
        return { outcome: 'not_configured' };
      }
      server.setPublicCertificate(next);
      logPublic(next, 'public certificate reloaded (new connections get it; open ones keep theirs)');
      return { outcome: 'reloaded', names: next.names, notAfter: next.notAfter };
    },
    /**
     * The drain (SIGTERM): /readyz answers 503 draining at once; no new connections; held polls
     * answered now with 503 draining + Retry-After (agents move to another replica, or come back
     * after a restart) and every poll after them too; requests in flight finish (bounded by the
     * server's grace); then the database is closed.
     */
    async close() {
      const t0 = Date.now();
      draining = true;
      clearInterval(reaper);
      clearInterval(cacheCollector);
      await retention.stop();
      sessions.stop();
      await drift.stop();
      clearInterval(ticketRefresh);
      clearInterval(certCacheExpiry);
      clearInterval(sweeper);
      const held = dispatcher.held;
      dispatcher.drain();
      const open = server.connections;
      await Promise.all([retention.stop(), server.close()]);
      await dispatcher.notifier.close().catch((err: unknown) => log.warn({ err }, 'notifier close failed'));
      const tClosed = Date.now();
      dbClock?.stop();
      barrier.close();
      await storage.close();
      lock.release();
      log.info({ heldPolls: held, connections: open.tls, connectionsClosedMs: tClosed - t0, totalMs: Date.now() - t0 }, 'control plane stopped');
    },
  };
}
