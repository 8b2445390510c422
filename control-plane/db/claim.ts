/**
 * The claim query: hands the oldest queued command of one target to one agent.
 *
 * Why it is safe: the UPDATE that takes the row re-checks `state = 'queued'`, and SQLite runs one
 * writer at a time. On the direct path (commands.repository.ts, claimDirect) the pick (a read) and
 * that UPDATE run synchronously back to back on the one connection, so nothing can claim the row
 * in between; on the Kysely path (inside a transaction) it is a single UPDATE whose WHERE both picks
 * the row and re-checks the state. Either way two claims can never both take the same row. The claim writes a fresh lease id, the fencing
 * token every later report about this attempt must carry; a requeue clears it, so a report from
 * an older attempt can never match again.
 */
import { exclusive, sqliteOf, type Db } from './database.ts';
import { claimDirect, type CommandRow } from './commands.repository.ts';

export interface ClaimTarget {
  aid: string;
  cid: string;
  /** A node agent claims only its node's commands; a cluster agent (nid null) the cluster's. */
  nid: string | null;
}

/** `leaseId` may be a function: it is then called only when there is a command to claim. */
export async function claimNext(
  db: Db,
  target: ClaimTarget,
  claim: { agentId: string; leaseId: string | (() => string); leaseExpiresAt: number; now: number },
): Promise<CommandRow | undefined> {
  const sqlite = sqliteOf(db);
  if (sqlite) return exclusive(db, sqlite, () => claimDirect(sqlite, target, claim));
  const leaseId = typeof claim.leaseId === 'function' ? claim.leaseId() : claim.leaseId;
  return db
    .updateTable('commands')
    .set((eb) => ({
      state: 'running',
      attempts: eb('attempts', '+', 1),
      lease_id: leaseId,
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
