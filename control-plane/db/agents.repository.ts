import type { Db } from './database.ts';
import type { AgentsTable, CertificatesTable } from './agents.table.ts';

export async function insertAgent(db: Db, a: Omit<AgentsTable, 'revoked_at' | 'last_heartbeat_at' | 'heartbeats' | 'version' | 'metrics' | 'vpn'>) {
  await db.insertInto('agents').values({ ...a, revoked_at: null, last_heartbeat_at: null, heartbeats: 0, version: null, metrics: null, vpn: null }).execute();
}

export async function getAgent(db: Db, id: string) {
  return db.selectFrom('agents').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function findActiveNode(db: Db, aid: string, cid: string, nid: string) {
  return db
    .selectFrom('agents')
    .selectAll()
    .where('aid', '=', aid)
    .where('cid', '=', cid)
    .where('nid', '=', nid)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
}

export async function listAgents(db: Db, aid: string, filter: { cid?: string } = {}) {
  let q = db.selectFrom('agents').selectAll().where('aid', '=', aid);
  if (filter.cid) q = q.where('cid', '=', filter.cid);
  return q.orderBy('cid').orderBy('created_at').execute();
}

/** Revokes an agent and every certificate it holds; its next request is refused. */
export async function revokeAgent(db: Db, aid: string, id: string, now: number): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const r = await trx.updateTable('agents').set({ revoked_at: now }).where('aid', '=', aid).where('id', '=', id).where('revoked_at', 'is', null).executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) return false;
    await trx.updateTable('certificates').set({ revoked_at: now }).where('agent_id', '=', id).where('revoked_at', 'is', null).execute();
    return true;
  });
}

export async function insertCertificate(db: Db, c: CertificatesTable) {
  await db.insertInto('certificates').values(c).execute();
}

/** The certificate with its agent, for authorising an mTLS request. */
export async function findCertificateAgent(db: Db, serial: string) {
  return db
    .selectFrom('certificates')
    .innerJoin('agents', 'agents.id', 'certificates.agent_id')
    .select([
      'certificates.serial',
      'certificates.not_after',
      'certificates.revoked_at as cert_revoked_at',
      'agents.id as agent_id',
      'agents.aid',
      'agents.cid',
      'agents.role',
      'agents.nid',
      'agents.control_plane',
      'agents.revoked_at as agent_revoked_at',
    ])
    .where('certificates.serial', '=', serial)
    .executeTakeFirst();
}

export async function recordHeartbeat(
  db: Db,
  id: string,
  hb: { now: number; version: string; metrics: string; vpn: string | null },
) {
  await db
    .updateTable('agents')
    .set((eb) => ({ last_heartbeat_at: hb.now, version: hb.version, metrics: hb.metrics, vpn: hb.vpn, heartbeats: eb('heartbeats', '+', 1) }))
    .where('id', '=', id)
    .execute();
}

/** Last heartbeat of every unrevoked agent (for the agents-by-status gauge). */
export async function activeAgentHeartbeats(db: Db): Promise<(number | null)[]> {
  const rows = await db.selectFrom('agents').select('last_heartbeat_at').where('revoked_at', 'is', null).execute();
  return rows.map((r) => r.last_heartbeat_at);
}
