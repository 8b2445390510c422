import type { Db } from './database.ts';
import type { VpnNodesTable, VpnUsersTable } from './vpn.table.ts';

export type VpnNodeRow = VpnNodesTable;
export type VpnUserRow = VpnUsersTable;

export async function getVpnNode(db: Db, agentId: string): Promise<VpnNodeRow | undefined> {
  return db.selectFrom('vpn_nodes').selectAll().where('agent_id', '=', agentId).executeTakeFirst();
}

/** The VPN rows of the cluster's unrevoked node agents, in wg0 address order. */
export async function listActiveVpnNodes(db: Db, aid: string, cid: string): Promise<VpnNodeRow[]> {
  return db
    .selectFrom('vpn_nodes')
    .innerJoin('agents', 'agents.id', 'vpn_nodes.agent_id')
    .selectAll('vpn_nodes')
    .where('vpn_nodes.aid', '=', aid)
    .where('vpn_nodes.cid', '=', cid)
    .where('agents.revoked_at', 'is', null)
    .orderBy('vpn_nodes.wg0_index')
    .execute();
}

/** Host numbers taken in the cluster: nodes' wg0 and wg1, users' wg1. */
export async function usedIndices(db: Db, aid: string, cid: string): Promise<{ wg0: number[]; wg1Nodes: number[]; wg1Users: number[] }> {
  const nodes = await db.selectFrom('vpn_nodes').select(['wg0_index', 'wg1_index']).where('aid', '=', aid).where('cid', '=', cid).execute();
  const users = await db.selectFrom('vpn_users').select('wg1_index').where('aid', '=', aid).where('cid', '=', cid).where('revoked_at', 'is', null).execute();
  return { wg0: nodes.map((n) => n.wg0_index), wg1Nodes: nodes.map((n) => n.wg1_index), wg1Users: users.map((u) => u.wg1_index) };
}

export async function insertVpnNode(db: Db, row: VpnNodeRow): Promise<void> {
  await db.insertInto('vpn_nodes').values(row).execute();
}

export async function updateVpnNodeKeys(
  db: Db,
  agentId: string,
  k: { wg0_public_key: string; wg1_public_key: string; wg0_port: number; wg1_port: number; endpoint_host: string; updated_at: number },
): Promise<void> {
  await db.updateTable('vpn_nodes').set(k).where('agent_id', '=', agentId).execute();
}

/** Frees a departed node's addresses. */
export async function deleteVpnNode(db: Db, agentId: string): Promise<void> {
  await db.deleteFrom('vpn_nodes').where('agent_id', '=', agentId).execute();
}

export async function insertVpnUser(db: Db, row: VpnUserRow): Promise<void> {
  await db.insertInto('vpn_users').values(row).execute();
}

export async function listActiveVpnUsers(db: Db, aid: string, cid: string): Promise<VpnUserRow[]> {
  return db.selectFrom('vpn_users').selectAll().where('aid', '=', aid).where('cid', '=', cid).where('revoked_at', 'is', null).orderBy('wg1_index').execute();
}

export async function getVpnUser(db: Db, aid: string, cid: string, id: string): Promise<VpnUserRow | undefined> {
  return db.selectFrom('vpn_users').selectAll().where('aid', '=', aid).where('cid', '=', cid).where('id', '=', id).executeTakeFirst();
}

export async function revokeVpnUser(db: Db, aid: string, cid: string, id: string, now: number): Promise<boolean> {
  const r = await db.updateTable('vpn_users').set({ revoked_at: now }).where('aid', '=', aid).where('cid', '=', cid).where('id', '=', id).where('revoked_at', 'is', null).executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** Whether a command of this type already waits (unclaimed) for the node: one queued sync is enough. */
export async function hasQueuedNodeCommand(db: Db, aid: string, cid: string, nid: string, type: string): Promise<boolean> {
  const r = await db
    .selectFrom('commands')
    .select('id')
    .where('aid', '=', aid)
    .where('cid', '=', cid)
    .where('nid', '=', nid)
    .where('state', '=', 'queued')
    .where('type', '=', type as 'vpn-sync')
    .limit(1)
    .executeTakeFirst();
  return r !== undefined;
}
