/**
 * What replicas ask of the shared database beside the queue: whether it answers (/readyz).
 */
import { sql } from 'kysely';
import type { Db } from './database.ts';

/** A trivial round trip: the database answers. */
export async function pingDatabase(db: Db): Promise<void> {
  await sql`select 1`.execute(db);
}
