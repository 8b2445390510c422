/**
 * `tether-node register`: one time. The key pair is generated here and the private key is written
 * (0600) before anything is sent, into a pending file beside `node.key`; only a CSR travels, traded
 * with the one-time bootstrap token for a certificate. The pending key replaces `node.key` only once
 * the certificate arrived, so a register that fails (a spent token, `--force` over a working node)
 * leaves the registered node's key and certificate as they were. Then the configuration file is
 * written (0600).
 */
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { generateKeyPair } from '../../common/csr.ts';
import { writeFileAtomic } from '../../common/files.ts';
import { bootstrapAgent } from '../../common/agent/agent-client.ts';
import { parseControlPlaneUrls } from '../../common/agent/failover.plan.ts';
import type { Logger } from '../../common/logger.ts';
import { ConfigError, defaultStateDir, nodeConfigSchema, saveNodeConfig, type NodeConfig } from '../config/node.config.ts';

export interface RegisterOptions {
  configPath: string;
  token: string;
  aid: string;
  controlPlane: boolean;
  /** One URL, or several comma-separated (replicas): the first is `server`, the others `servers`. */
  server: string;
  caFile?: string;
  name?: string;
  stateDir?: string;
  network?: Partial<{ manageVpn: boolean; wg0Interface: string; wg1Interface: string; wg0Port: number; wg1Port: number; endpointAddress: string; wireguardGo: string }>;
  heartbeatIntervalMs?: number;
  force?: boolean;
}

export async function registerNode(o: RegisterOptions, log: Logger): Promise<NodeConfig> {
  if (existsSync(o.configPath) && !o.force) throw new ConfigError(`${o.configPath} exists: this node is registered already (revoke it and pass --force to register again)`);
  const dir = dirname(o.configPath);
  const keyFile = join(dir, 'node.key');
  const certFile = join(dir, 'node.crt');
  const caFile = join(dir, 'ca.crt');
  let caPem: string | undefined;
  if (o.caFile) {
    try {
      caPem = readFileSync(o.caFile, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read the CA file ${o.caFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  // Validate everything local before the one-time token is spent.
  let urls: string[];
  try {
    urls = parseControlPlaneUrls(o.server);
  } catch (err) {
    throw new ConfigError(`--server: ${(err as Error).message}`);
  }
  const n = o.network ?? {};
  const draft = {
    nodeId: o.name ?? 'pending',
    agentId: 'pending',
    accountId: o.aid,
    cluster: 'pending',
    controlPlane: o.controlPlane,
    server: urls[0]!,
    ...(urls.length > 1 ? { servers: urls.slice(1) } : {}),
    caFile,
    certFile,
    keyFile,
    stateDir: o.stateDir ?? defaultStateDir(o.configPath),
    ...(o.heartbeatIntervalMs ? { heartbeatIntervalMs: o.heartbeatIntervalMs } : {}),
    network: {
      manageVpn: n.manageVpn ?? true,
      wg0: { interface: n.wg0Interface ?? 'wg0', listenPort: n.wg0Port ?? 51820 },
      wg1: { interface: n.wg1Interface ?? 'wg1', listenPort: n.wg1Port ?? 51821 },
      ...(n.endpointAddress ? { endpointAddress: n.endpointAddress } : {}),
      wireguardGo: n.wireguardGo ?? 'wireguard-go',
    },
  };
  const checked = nodeConfigSchema.safeParse(draft);
  if (!checked.success) throw new ConfigError(checked.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '));

  const keys = generateKeyPair();
  const pendingKey = `${keyFile}.pending`;
  writeFileAtomic(pendingKey, keys.privateKeyPem, 0o600);
  log.info({ servers: urls, aid: o.aid, controlPlane: o.controlPlane, name: o.name }, 'registering with the control plane');
  let res: Awaited<ReturnType<typeof bootstrapAgent>>;
  try {
    // Without --ca-file the server is verified against the system's CAs (an empty CA means the defaults).
    res = await bootstrapAgent({ url: urls, caPem: caPem ?? '', token: o.token, keys, aid: o.aid, controlPlane: o.controlPlane, ...(o.name ? { nodeName: o.name } : {}) });
    if (res.role !== 'node' || !res.nid) throw new ConfigError(`the token is for a ${res.role}, not a node`);
  } catch (err) {
    rmSync(pendingKey, { force: true });
    throw err;
  }
  // The certificate arrived: the new key and certificate replace the old pair together.
  writeFileAtomic(`${certFile}.pending`, res.certificate, 0o644);
  renameSync(pendingKey, keyFile);
  renameSync(`${certFile}.pending`, certFile);
  writeFileAtomic(caFile, res.caCertificate, 0o644);
  const config: NodeConfig = { ...checked.data, nodeId: res.nid, agentId: res.agentId, accountId: res.aid, cluster: res.cid, controlPlane: res.controlPlane };
  saveNodeConfig(o.configPath, config);
  log.info({ agentId: res.agentId, nid: res.nid, cid: res.cid, expiresAt: res.expiresAt, config: o.configPath }, 'registered');
  return config;
}
