import { sql, type Kysely } from 'kysely';

/**
 * What one tenant may store (issue 11): each command's log size, kept beside its lines so the
 * per-command cap costs a primary-key read per append instead of a sum over the lines; and the
 * index retention walks (finished commands by age; finished_at is set exactly in terminal states).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('command_log_usage')
    .addColumn('command_id', 'integer', (c) => c.primaryKey().references('commands.id'))
    .addColumn('bytes', 'integer', (c) => c.notNull())
    .addColumn('lines', 'integer', (c) => c.notNull())
    .addColumn('dropped_bytes', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('dropped_lines', 'integer', (c) => c.notNull().defaultTo(0))
    /** The id of the truncation marker line, once the cap was reached. */
    .addColumn('marker_id', 'integer')
    .execute();
  // Logs stored before this migration count from zero: the cap applies to what is written after it.
  await sql`CREATE INDEX commands_finished ON commands (finished_at) WHERE finished_at IS NOT NULL`.execute(db);
}
