/** The control plane's configuration, parsed once with zod at the composition root. */
import { z } from 'zod';
import { LONG_POLL_SECONDS } from '../common/agent-wire.ts';
import { defaultServerSans } from './pki/ca.ts';
import { DURABILITY_MODES } from './db/durability.ts';
import { agentRatesSchema } from './http/agent-rate.ts';

export const configSchema = z.object({
  dataDir: z.string().min(1).default('./data'),
  // -- storage (issue 15; docs/control-plane.md "PostgreSQL")
  /** PostgreSQL URL (`--database`, TETHER_DATABASE_URL); none: SQLite in dataDir. Its password is never logged. */
  databaseUrl: z
    .string()
    .max(4096)
    .refine((u) => /^postgres(ql)?:\/\/./i.test(u), { message: 'the database URL must start with postgres:// or postgresql://' })
    .optional(),
  /** PostgreSQL connections per control-plane process. */
  databasePoolSize: z.number().int().min(1).max(500).default(10),
  /** A PostgreSQL statement running longer is cancelled (503 storage_unavailable). */
  databaseStatementTimeoutMs: z.number().int().min(100).max(600_000).default(30_000),
  /**
   * Replicas on PostgreSQL: the key (32 bytes, base64 or hex) the shared CA key is encrypted with
   * in the database (`--ca-key-encryption-key-file`, TETHER_CA_KEY_ENCRYPTION_KEY; pki/shared-ca.ts).
   */
  caKeyEncryptionKey: z.string().max(200).optional(),
  host: z.string().min(1).default('0.0.0.0'),
  port: z.number().int().min(0).max(65535).default(8443),
  /** `--admin-listen`: the admin API (HTTP/1.1 only) also on this address, a listening socket of its own. */
  admin: z.object({ host: z.string().min(1), port: z.number().int().min(0).max(65535) }).optional(),
  /** Extra names/IPs for the server certificate (the defaults are always included). */
  sans: z.array(z.string().min(1)).default([]),
  /** How long a claim is held without a heartbeat before the command is requeued. */
  leaseSeconds: z.number().int().min(1).max(3600).default(30),
  /** Longest time a poll is held open before it answers "nothing" (the agents ask as long). */
  longPollSeconds: z.number().min(0.05).max(120).default(LONG_POLL_SECONDS),
  /** Added to a command's timeout before the control plane itself declares it timed out. */
  timeoutGraceSeconds: z.number().int().min(0).max(3600).default(30),
  bootstrapTokenTtlSeconds: z.number().int().min(60).default(3600),
  certificateTtlDays: z.number().min(0.001).max(3650).default(30),
  adminTokenTtlDays: z.number().min(1).max(3650).default(365),
  defaultTimeoutSeconds: z.number().int().min(1).default(600),
  defaultMaxAttempts: z.number().int().min(1).default(3),
  domainRoot: z.string().default('tether.local'),
  /** JSON request bodies above this size are refused with 413. */
  bodyLimitBytes: z.number().int().min(1024).default(2 * 1024 * 1024),
  /**
   * A certificate chain and key the operator brings for the public endpoint (both or neither),
   * served to clients asking for its names; reloaded on SIGHUP (pki/public-cert.ts).
   */
  tlsCertFile: z.string().min(1).optional(),
  tlsKeyFile: z.string().min(1).optional(),
  /** Failed bootstrap attempts allowed per client address per minute. */
  bootstrapFailuresPerMinute: z.number().int().min(1).default(20),
  // -- what one tenant may take (issue 11; docs/guarantees.md "Tenant limits")
  /** A certificate is renewed only once at most this fraction of its lifetime is left (1: any time). */
  renewWithinFraction: z.number().gt(0).max(1).default(0.5),
  /** Log bytes stored per command; past it the log ends with one marker line saying what was dropped. */
  logBytesPerCommand: z.number().int().min(1024).default(10 * 1024 * 1024),
  /** Log bytes an agent may send per second, with a burst of eight seconds' worth; above → 429. */
  logBytesPerAgentPerSecond: z.number().int().min(1024).default(1024 * 1024),
  /** Size of a result's outputs (as JSON); above → 413 naming `outputs`. */
  outputsLimitBytes: z.number().int().min(1024).default(256 * 1024),
  /** Finished commands and their logs are deleted this long after they finished (0: kept forever). */
  retentionSeconds: z.number().int().min(0).default(30 * 86400),
  /** Folders file:// bundle sources may be below (`--allow-file-root`, TETHER_ALLOW_FILE_ROOTS); none: no file:// at all. */
  allowFileRoots: z.array(z.string().min(1)).default([]),
  /** http:// bundle sources (`--allow-http`); https only otherwise. */
  allowHttp: z.boolean().default(false),
  /** Bundle sources on private, loopback or link-local addresses (`--allow-private-addresses`). */
  allowPrivateAddresses: z.boolean().default(false),
  /** Longest one git operation on a bundle source may take. */
  gitTimeoutSeconds: z.number().int().min(1).max(3600).default(120),
  /** Bundle cache entries (mirrors, checked-out trees) unused this long are removed. */
  bundleCacheIdleDays: z.number().min(0).max(3650).default(14),
  /** Scheduled drift checks: the interval of instances without their own (`--drift-interval 10m|off`; 0: off), jittered ±20 %. */
  driftIntervalSeconds: z.union([z.literal(0), z.number().int().min(60).max(86_400)]).default(600),
  /** The most drift checks one scheduler tick submits (the rest wait for the next tick). */
  driftChecksPerTick: z.number().int().min(1).max(10_000).default(100),
  /** Time between the drift scheduler's ticks. */
  driftTickMs: z.number().int().min(100).max(600_000).default(5000),

  // Transport limits against hostile clients (docs/guarantees.md, "Transport limits").
  /** A connection that has not finished its TLS handshake by then is closed. */
  handshakeTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  /** HTTP/1.1: a request's headers must have arrived this long after its first byte (or the connection's start). */
  headersTimeoutMs: z.number().int().min(100).max(300_000).default(15_000),
  /** HTTP/1.1: a whole request, body included, must have arrived within this time (a stalled upload is closed). */
  requestTimeoutMs: z.number().int().min(100).max(3_600_000).default(60_000),
  /** An HTTP/1.1 connection with no request in progress, or an HTTP/2 session with no open stream, is closed after this long. */
  idleTimeoutMs: z.number().int().min(100).max(3_600_000).default(30_000),
  /** Connections from one address that have no valid client certificate and have not authenticated a request yet. */
  unauthenticatedPerAddress: z.number().int().min(1).default(32),
  /** All such connections (TLS handshakes in progress included); default: a quarter of the open-files limit. */
  unauthenticatedTotal: z.number().int().min(1).optional(),
  /** Request bodies parsed at once on the admin API and bootstrap; more are answered 503 with Retry-After. */
  bodyParsesMax: z.number().int().min(1).default(16),
  /**
   * Each agent's requests per route class (heartbeat, poll, result, logs, other): a token bucket
   * per agent in memory, 429 with Retry-After before the body is read (http/agent-rate.ts;
   * `--agent-rate-limits`, TETHER_AGENT_RATE_LIMITS); false: no limit.
   */
  agentRequestRates: agentRatesSchema,
  /** POST /v1/bootstrap bodies above this size are refused with 413 (a token and a CSR). */
  bootstrapBodyLimitBytes: z.number().int().min(1024).default(8 * 1024),

  // The web console's sessions (issue 14; docs/control-plane.md "Console sessions").
  /** A session ends this long after sign-in (never later than its API token). */
  sessionTtlSeconds: z.number().int().min(60).max(30 * 86400).default(12 * 3600),
  /** A session unused this long ends. */
  sessionIdleSeconds: z.number().int().min(60).max(30 * 86400).default(3600),
  /** Live sessions per account; signing in beyond it ends the oldest. */
  sessionsPerAccount: z.number().int().min(1).max(10_000).default(100),
  /** Failed sign-ins (POST /v1/sessions) allowed per client address per minute. */
  loginFailuresPerMinute: z.number().int().min(1).default(20),
  /**
   * full: every answer waits until what it acknowledges is on disk (survives a power cut; group
   * commit, db/durability.ts). normal: committed to the WAL only (survives kill -9, not a power cut).
   */
  durability: z.enum(DURABILITY_MODES).default('full'),
});

export type Config = z.infer<typeof configSchema>;

export function parseConfig(input: z.input<typeof configSchema>): Config {
  return configSchema.parse(input);
}

export function serverSans(config: Config): string[] {
  return [...new Set([...defaultServerSans(), ...config.sans])];
}
