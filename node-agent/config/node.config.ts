/**
 * The node agent's configuration file (YAML, zod-validated, 0600). `register` writes it; every
 * other command reads it. Its path: --config, else $TETHER_NODE_CONFIG, else /etc/tether/config.yaml.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
// js-yaml (YAML 1.2, core schema), not `yaml`: half its size (~60 vs ~120 KB of bundled source, ~0.35 MiB less
// heap), and the daemon reads this file at start and keeps the parser loaded for as long as it runs.
import { dump, load } from 'js-yaml';
import * as z from '../../common/zod-mini.ts';
import { AID_RE, CID_RE, ID_MESSAGES, LONG_POLL_SECONDS, NID_RE } from '../../common/agent-wire.ts';
import { writeFileAtomic } from '../../common/files.ts';

export const DEFAULT_CONFIG_PATH = '/etc/tether/config.yaml';
export const DEFAULT_STATE_DIR = '/var/lib/tether';

// zod/mini (common/zod-mini.ts): the daemon parses this at start without loading classic zod.
const httpsUrl = z.url().check(z.refine((u) => u.startsWith('https://'), 'the control plane URL must be https://'));
const ifname = z.string().check(z.regex(/^[A-Za-z0-9_.-]{1,15}$/, 'an interface name: at most 15 of [A-Za-z0-9_.-]'));
const aidSchema = z.string().check(z.regex(AID_RE, ID_MESSAGES.aid));
const cidSchema = z.string().check(z.regex(CID_RE, ID_MESSAGES.cid));
const nidSchema = z.string().check(z.regex(NID_RE, ID_MESSAGES.nid));
const port = z.int().check(z.minimum(1), z.maximum(65535));
const intIn = (min: number, max: number) => z.int().check(z.minimum(min), z.maximum(max));
const nonEmpty = () => z.string().check(z.minLength(1));

export const interfaceSchema = z.strictObject({ interface: ifname, listenPort: port });

export const networkSchema = z
  .strictObject({
    /** Whether this agent manages WireGuard at all (false: vpn-sync is refused, heartbeats carry no VPN state). */
    manageVpn: z._default(z.boolean(), true),
    wg0: z._default(interfaceSchema, { interface: 'wg0', listenPort: 51820 }),
    wg1: z._default(interfaceSchema, { interface: 'wg1', listenPort: 51821 }),
    /** Address other nodes and users reach this node at; unset: the local address routed to the control plane. */
    endpointAddress: z.optional(z.string().check(z.minLength(1), z.maxLength(253))),
    /** Userspace WireGuard used when the kernel refuses `ip link add … type wireguard`. */
    wireguardGo: z._default(nonEmpty(), 'wireguard-go'),
    /** Re-sync the VPN on this interval as a safety net (0 = only when told). */
    resyncSeconds: z._default(intIn(0, 86_400), 300),
  })
  .check(
    z.refine((n) => n.wg0.interface !== n.wg1.interface, 'wg0 and wg1 need different interface names'),
    z.refine((n) => n.wg0.listenPort !== n.wg1.listenPort, 'wg0 and wg1 need different listen ports'),
  );

export const nodeConfigSchema = z.strictObject({
  nodeId: nidSchema,
  agentId: z.string().check(z.minLength(1), z.maxLength(64)),
  accountId: aidSchema,
  cluster: cidSchema,
  controlPlane: z._default(z.boolean(), false),
  server: httpsUrl,
  /**
   * More control-plane replicas' URLs (each https://host[:port]): the agent starts on `server`
   * and moves to the next of these when its replica fails. Unset: `server` alone (which may be
   * one name with several addresses: the agent walks those the same way).
   */
  servers: z.optional(z.array(httpsUrl).check(z.maxLength(15))),
  caFile: nonEmpty(),
  certFile: nonEmpty(),
  keyFile: nonEmpty(),
  stateDir: nonEmpty(),
  /** Root prefix `install` writes its files under. */
  installRoot: z._default(nonEmpty(), '/'),
  heartbeatIntervalMs: z._default(intIn(100, 300_000), 5000),
  pollWaitSeconds: z._default(intIn(1, 120), LONG_POLL_SECONDS),
  shutdownGraceSeconds: z._default(intIn(0, 3600), 30),
  network: z._default(networkSchema, {
    manageVpn: true,
    wg0: { interface: 'wg0', listenPort: 51820 },
    wg1: { interface: 'wg1', listenPort: 51821 },
    wireguardGo: 'wireguard-go',
    resyncSeconds: 300,
  }),
});

export type NodeConfig = z.infer<typeof nodeConfigSchema>;
export type NetworkConfig = NodeConfig['network'];

/** Every control-plane URL the agent may use, `server` first. */
export function controlPlaneUrls(c: Pick<NodeConfig, 'server' | 'servers'>): string[] {
  return [...new Set([c.server, ...(c.servers ?? [])])];
}

/** --config, else $TETHER_NODE_CONFIG, else the default path. */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(flag ?? env.TETHER_NODE_CONFIG ?? DEFAULT_CONFIG_PATH);
}

/** Where state lives unless told: /var/lib/tether for the default config, else next to the config file. */
export function defaultStateDir(path: string): string {
  return path === DEFAULT_CONFIG_PATH ? DEFAULT_STATE_DIR : join(dirname(path), 'state');
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Parses YAML text; relative paths inside are relative to the config file's folder. */
export function parseNodeConfig(text: string, path: string): NodeConfig {
  let raw: unknown;
  try {
    raw = load(text);
  } catch (err) {
    throw new ConfigError(`${path}: not valid YAML: ${(err as Error).message}`);
  }
  const r = nodeConfigSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`${path}: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  const base = dirname(path);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const c = r.data;
  return { ...c, caFile: abs(c.caFile), certFile: abs(c.certFile), keyFile: abs(c.keyFile), stateDir: abs(c.stateDir), installRoot: abs(c.installRoot) };
}

export function loadNodeConfig(path: string): NodeConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(code === 'ENOENT' ? `no configuration at ${path}: run \`tether-node register\` first (or pass --config)` : `cannot read ${path}: ${code}`);
  }
  return parseNodeConfig(text, path);
}

export function renderNodeConfig(c: NodeConfig): string {
  return `# tether-node configuration (written by \`tether-node register\`)\n${dump(nodeConfigSchema.parse(c))}`;
}

export function saveNodeConfig(path: string, c: NodeConfig): void {
  writeFileAtomic(path, renderNodeConfig(c), 0o600);
}
