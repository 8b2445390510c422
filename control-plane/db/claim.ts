/**
 * The claim query: hands the oldest queued command of one target to one agent.
 *
 * Why it is safe: it is a single UPDATE whose WHERE both picks the row and re-checks
 * `state = 'queued'`. SQLite runs one writer at a time (and Kysely's driver serialises every
 * statement on its one connection), so two claims can never both see the same row as queued:
 * the second one's subquery no longer finds it. The claim writes a fresh lease id, the fencing
 * token every later report about this attempt must carry; a requeue clears it, so a report from
 * an older attempt can never match again.
 */
import type { Db } from './database.ts';

export interface ClaimTarget {
  aid: string;
  cid: string;
  /** A node agent claims only its node's commands; a cluster agent (nid null) the cluster's. */
  nid: string | null;
}

export async function claimNext(db: Db, target: ClaimTarget, claim: { agentId: string; leaseId: string; leaseExpiresAt: number; now: number }) {
  return db
    .updateTable('commands')
    .set((eb) => ({
      state: 'running',
      attempts: eb('attempts', '+', 1),
      lease_id: claim.leaseId,
      lease_expires_at: claim.leaseExpiresAt,
      claimed_by: claim.agentId,
      claimed_at: claim.now,
    }))
    .where('id', '=', (eb) =>
      eb
        .selectFrom('commands')
        .select('id')
        .where('state', '=', 'queued')
        .where('aid', '=', target.aid)
        .where('cid', '=', target.cid)
        .where('nid', 'is', target.nid)
        .orderBy('id')
        .limit(1),
    )
    .where('state', '=', 'queued')
    .returningAll()
    .executeTakeFirst();
}
