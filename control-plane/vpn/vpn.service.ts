/**
 * The VPN: allocates each node its wg0 (mesh) and wg1 (user access) addresses, records the public
 * keys and endpoints nodes register, answers each node with its peers, manages user peers, and
 * queues a `vpn-sync` for the cluster's other nodes whenever the peer list changes (a node joins,
 * registers new keys, leaves; a user is added or removed).
 */
import { conflict, notFound, unavailable } from '../../common/errors.ts';
import { randomAlnum } from '../../common/ids.ts';
import { iso, type Clock } from '../../common/clock.ts';
import type { Logger } from '../../common/logger.ts';
import type { Db } from '../db/database.ts';
import * as vpn from '../db/vpn.repository.ts';
import { getCluster } from '../db/accounts.repository.ts';
import { listAgents } from '../db/agents.repository.ts';
import type { AgentPrincipal, QueueService } from '../queue/queue.service.ts';
import { WG0_NETWORK, WG1_NETWORK, nextWg0Index, nextWg1NodeIndex, nextWg1UserIndex, wg0Address, wg1Address } from './vpn.addresses.ts';
import { renderClientConfig, type ClientNode } from './client-config.render.ts';
import { generateWgKeyPair } from './wireguard.keys.ts';
import type { VpnRegister } from './vpn.schemas.ts';

export interface VpnDeps {
  db: Db;
  clock: Clock;
  queue: QueueService;
  log: Logger;
}

/** What a node gets back: its addresses and its peers (the shape common/vpn.ts vpnConfigSchema describes). */
export interface NodeVpnConfig {
  nid: string;
  wg0: { address: string; network: string; peers: { nid: string; publicKey: string; endpoint: string | null; allowedIps: string[] }[] };
  wg1: { address: string; network: string; peers: { name: string; publicKey: string; allowedIps: string[] }[] };
}

const endpointOf = (host: string | null, port: number | null) => (host && port ? `${host.includes(':') ? `[${host}]` : host}:${port}` : null);

export class VpnService {
  private readonly d: VpnDeps;
  constructor(deps: VpnDeps) {
    this.d = deps;
  }

  /** The node's VPN row, allocating its addresses on first use. */
  async ensureNode(agent: AgentPrincipal): Promise<vpn.VpnNodeRow> {
    const { db, clock } = this.d;
    const existing = await vpn.getVpnNode(db, agent.agentId);
    if (existing) return existing;
    if (agent.role !== 'node' || !agent.nid) throw conflict('only node agents have VPN addresses', 'not_a_node');
    // Kysely's SQLite driver runs this transaction alone; the unique indexes back the choice anyway.
    return db.transaction().execute(async (trx) => {
      const again = await vpn.getVpnNode(trx, agent.agentId);
      if (again) return again;
      const used = await vpn.usedIndices(trx, agent.aid, agent.cid);
      const w0 = nextWg0Index(used.wg0);
      const w1 = nextWg1NodeIndex(used.wg1Nodes);
      if (w0 === undefined || w1 === undefined) throw unavailable(`cluster ${agent.cid} has no VPN address left`, 'vpn_addresses_exhausted');
      const now = clock.now();
      const row: vpn.VpnNodeRow = {
        agent_id: agent.agentId, aid: agent.aid, cid: agent.cid, nid: agent.nid!, wg0_index: w0, wg1_index: w1,
        wg0_public_key: null, wg1_public_key: null, wg0_port: null, wg1_port: null, endpoint_host: null, created_at: now, updated_at: now,
      };
      await vpn.insertVpnNode(trx, row);
      this.d.log.info({ agentId: agent.agentId, nid: agent.nid, wg0: wg0Address(w0), wg1: wg1Address(w1) }, 'VPN addresses allocated');
      return row;
    });
  }

  /** A node registers (or confirms) its public keys and endpoint; the others resync when anything changed. */
  async registerNode(agent: AgentPrincipal, r: VpnRegister): Promise<NodeVpnConfig> {
    const row = await this.ensureNode(agent);
    const changed =
      row.wg0_public_key !== r.wg0.publicKey || row.wg1_public_key !== r.wg1.publicKey || row.wg0_port !== r.wg0.listenPort ||
      row.wg1_port !== r.wg1.listenPort || row.endpoint_host !== r.endpointHost;
    if (changed) {
      await vpn.updateVpnNodeKeys(this.d.db, agent.agentId, {
        wg0_public_key: r.wg0.publicKey, wg1_public_key: r.wg1.publicKey, wg0_port: r.wg0.listenPort, wg1_port: r.wg1.listenPort,
        endpoint_host: r.endpointHost, updated_at: this.d.clock.now(),
      });
      this.d.log.info({ agentId: agent.agentId, nid: agent.nid, endpoint: endpointOf(r.endpointHost, r.wg0.listenPort) }, 'VPN keys registered');
      await this.queueSync(agent.aid, agent.cid, agent.agentId, 'node keys changed');
    }
    return this.configFor(agent);
  }

  async configFor(agent: AgentPrincipal): Promise<NodeVpnConfig> {
    const me = await this.ensureNode(agent);
    const nodes = await vpn.listActiveVpnNodes(this.d.db, agent.aid, agent.cid);
    const users = await vpn.listActiveVpnUsers(this.d.db, agent.aid, agent.cid);
    return {
      nid: me.nid,
      wg0: {
        address: wg0Address(me.wg0_index),
        network: WG0_NETWORK,
        peers: nodes
          .filter((n) => n.agent_id !== me.agent_id && n.wg0_public_key)
          .map((n) => ({ nid: n.nid, publicKey: n.wg0_public_key!, endpoint: endpointOf(n.endpoint_host, n.wg0_port), allowedIps: [`${wg0Address(n.wg0_index)}/32`] })),
      },
      wg1: {
        address: wg1Address(me.wg1_index),
        network: WG1_NETWORK,
        peers: users.map((u) => ({ name: u.name, publicKey: u.public_key, allowedIps: [`${wg1Address(u.wg1_index)}/32`] })),
      },
    };
  }

  /** Identity hook: a node was bootstrapped. */
  async onNodeJoined(agent: AgentPrincipal): Promise<void> {
    await this.ensureNode(agent);
    await this.queueSync(agent.aid, agent.cid, agent.agentId, `node ${agent.nid} joined`);
  }

  /** Identity hook: a node was revoked; its addresses are freed and the others drop it. */
  async onNodeLeft(agent: AgentPrincipal): Promise<void> {
    await vpn.deleteVpnNode(this.d.db, agent.agentId);
    await this.queueSync(agent.aid, agent.cid, agent.agentId, `node ${agent.nid} left`);
  }

  async createUser(aid: string, cid: string, u: { name: string; publicKey?: string }) {
    const { db, clock } = this.d;
    if (!(await getCluster(db, aid, cid))) throw notFound(`cluster ${cid} does not exist`, 'cluster_not_found');
    const keys = u.publicKey ? undefined : generateWgKeyPair();
    const publicKey = u.publicKey ?? keys!.publicKey;
    const id = `vu-${randomAlnum(10)}`;
    const row = await db.transaction().execute(async (trx) => {
      const current = await vpn.listActiveVpnUsers(trx, aid, cid);
      if (current.some((x) => x.name === u.name)) throw conflict(`user ${u.name} already has VPN access to cluster ${cid}`, 'vpn_user_exists');
      const idx = nextWg1UserIndex((await vpn.usedIndices(trx, aid, cid)).wg1Users);
      if (idx === undefined) throw unavailable(`cluster ${cid} has no user address left`, 'vpn_addresses_exhausted');
      const r: vpn.VpnUserRow = { id, aid, cid, name: u.name, wg1_index: idx, public_key: publicKey, created_at: clock.now(), revoked_at: null };
      await vpn.insertVpnUser(trx, r);
      return r;
    });
    this.d.log.info({ aid, cid, userId: id, name: u.name, address: wg1Address(row.wg1_index), generatedKey: !u.publicKey }, 'VPN user created');
    await this.queueSync(aid, cid, undefined, `user ${u.name} added`);
    // The generated private key is in this answer only; it is not stored anywhere.
    return { user: this.userView(row), clientConfig: await this.clientConfig(row, keys?.privateKey), privateKeyIncluded: keys !== undefined };
  }

  async userConfig(aid: string, cid: string, id: string) {
    const row = await vpn.getVpnUser(this.d.db, aid, cid, id);
    if (!row || row.revoked_at !== null) throw notFound(`VPN user ${id} does not exist`, 'vpn_user_not_found');
    return { user: this.userView(row), clientConfig: await this.clientConfig(row) };
  }

  async revokeUser(aid: string, cid: string, id: string): Promise<void> {
    if (!(await vpn.revokeVpnUser(this.d.db, aid, cid, id, this.d.clock.now()))) throw notFound(`VPN user ${id} does not exist`, 'vpn_user_not_found');
    this.d.log.info({ aid, cid, userId: id }, 'VPN user revoked');
    await this.queueSync(aid, cid, undefined, `user ${id} removed`);
  }

  async clusterView(aid: string, cid: string) {
    if (!(await getCluster(this.d.db, aid, cid))) throw notFound(`cluster ${cid} does not exist`, 'cluster_not_found');
    const nodes = await vpn.listActiveVpnNodes(this.d.db, aid, cid);
    const users = await vpn.listActiveVpnUsers(this.d.db, aid, cid);
    return {
      cluster: cid,
      wg0: { network: WG0_NETWORK },
      wg1: { network: WG1_NETWORK },
      nodes: nodes.map((n) => ({
        agentId: n.agent_id, nid: n.nid, wg0Address: wg0Address(n.wg0_index), wg1Address: wg1Address(n.wg1_index),
        wg0PublicKey: n.wg0_public_key, wg1PublicKey: n.wg1_public_key, endpoint: endpointOf(n.endpoint_host, n.wg0_port),
        registered: n.wg0_public_key !== null, updatedAt: iso(n.updated_at),
      })),
      users: users.map((u) => this.userView(u)),
    };
  }

  private userView(u: vpn.VpnUserRow) {
    return { id: u.id, name: u.name, cluster: u.cid, address: wg1Address(u.wg1_index), publicKey: u.public_key, createdAt: iso(u.created_at) };
  }

  private async clientConfig(u: vpn.VpnUserRow, privateKey?: string): Promise<string> {
    const nodes: ClientNode[] = (await vpn.listActiveVpnNodes(this.d.db, u.aid, u.cid)).flatMap((n) => {
      const endpoint = endpointOf(n.endpoint_host, n.wg1_port);
      return n.wg1_public_key && endpoint ? [{ nid: n.nid, publicKey: n.wg1_public_key, endpoint, wg1Address: wg1Address(n.wg1_index) }] : [];
    });
    return renderClientConfig({ name: u.name, address: wg1Address(u.wg1_index), ...(privateKey ? { privateKey } : {}) }, nodes);
  }

  /**
   * Queues a vpn-sync for every unrevoked node of the cluster but `except`. A node that already has
   * one waiting gets no second: the waiting one reads the newest state when it runs.
   */
  async queueSync(aid: string, cid: string, except: string | undefined, reason: string): Promise<number> {
    const nodes = (await listAgents(this.d.db, aid, { cid })).filter((a) => a.role === 'node' && a.nid && a.revoked_at === null && a.id !== except);
    let queued = 0;
    for (const n of nodes) {
      if (await vpn.hasQueuedNodeCommand(this.d.db, aid, cid, n.nid!, 'vpn-sync')) continue;
      try {
        await this.d.queue.submit(aid, { target: { cluster: cid, node: n.nid! }, type: 'vpn-sync', spec: {}, timeoutSeconds: 120, maxAttempts: 5 });
        queued++;
      } catch (err) {
        this.d.log.warn({ err, nid: n.nid }, 'cannot queue a vpn-sync');
      }
    }
    if (nodes.length) this.d.log.info({ aid, cid, reason, queued }, 'vpn-sync queued for the cluster');
    return queued;
  }
}
