import { sql } from 'kysely';
import type SQLite from 'better-sqlite3';
import { directOf, exclusive, prepared, type Db } from './database.ts';

export interface NewLogLine {
  ts: number;
  stream: string;
  text: string;
}

export interface StoredLogLine {
  id: number;
  ts: number;
  stream: string;
  text: string;
}

const stmts = prepared((s) => ({
  usage: s.prepare(`SELECT bytes, lines, dropped_bytes, dropped_lines, marker_id FROM command_log_usage WHERE command_id = ?`),
  insert: s.prepare(`INSERT INTO command_logs (command_id, ts, stream, text) VALUES (?, ?, ?, ?) RETURNING id, ts, stream, text`),
  setMarker: s.prepare(`UPDATE command_logs SET text = ? WHERE id = ?`),
  saveUsage: s.prepare(
    `INSERT INTO command_log_usage (command_id, bytes, lines, dropped_bytes, dropped_lines, marker_id) VALUES (@id, @bytes, @lines, @droppedBytes, @droppedLines, @markerId)
     ON CONFLICT (command_id) DO UPDATE SET bytes = @bytes, lines = @lines, dropped_bytes = @droppedBytes, dropped_lines = @droppedLines, marker_id = @markerId`,
  ),
}));

/**
 * The lines of one append go in as multi-row INSERTs (one statement per up to LINES_PER_INSERT
 * lines instead of one per line), each prepared once per database and row count, on first use.
 */
const LINES_PER_INSERT = 64;
const insertMany = prepared((s) => {
  const bySize = new Map<number, SQLite.Statement>();
  return (n: number): SQLite.Statement => {
    let stmt = bySize.get(n);
    if (!stmt) {
      stmt = s.prepare(`INSERT INTO command_logs (command_id, ts, stream, text) VALUES ${Array.from({ length: n }, () => '(?, ?, ?, ?)').join(', ')} RETURNING id, ts, stream, text`);
      bySize.set(n, stmt);
    }
    return stmt;
  };
});

/** Inserts `lines` for the command (inside the caller's transaction); the stored lines in order. */
function insertLines(sqlite: SQLite.Database, commandId: number, lines: NewLogLine[]): StoredLogLine[] {
  const stored: StoredLogLine[] = [];
  for (let i = 0; i < lines.length; i += LINES_PER_INSERT) {
    const chunk = lines.slice(i, i + LINES_PER_INSERT);
    const params: unknown[] = [];
    for (const l of chunk) params.push(commandId, l.ts, l.stream, l.text);
    // RETURNING's row order is not promised; the ids follow the VALUES order (one statement, one writer).
    const rows = insertMany(sqlite)(chunk.length).all(...params) as StoredLogLine[];
    rows.sort((a, b) => a.id - b.id);
    stored.push(...rows);
  }
  return stored;
}

type Usage = { bytes: number; lines: number; dropped_bytes: number; dropped_lines: number; marker_id: number | null };

/** The one line that ends a truncated log. */
export function truncationMarker(capBytes: number, droppedBytes: number, droppedLines: number): string {
  return `[tether] log truncated at ${capBytes} bytes: ${droppedBytes} bytes in ${droppedLines} lines dropped`;
}

/**
 * Appends a command's log lines, keeping at most `capBytes` of text per command. Lines are kept in
 * order until one does not fit; it and every line after it (in this and later appends) are
 * dropped, and the log ends with one marker line (stream `system`) saying how much was dropped,
 * rewritten as more is. Runs synchronously in one transaction (the usage row and the lines agree).
 * Returns the lines stored by this call (with the marker, when this call wrote it first).
 */
export async function appendLogs(db: Db, commandId: number, lines: NewLogLine[], capBytes: number): Promise<StoredLogLine[]> {
  if (lines.length === 0) return [];
  const sqlite = directOf(db);
  if (!sqlite) return appendLogsPostgres(db, commandId, lines, capBytes);
  const q = stmts(sqlite);
  const run = sqlite.transaction((): StoredLogLine[] => {
    const u = (q.usage.get(commandId) as Usage | undefined) ?? { bytes: 0, lines: 0, dropped_bytes: 0, dropped_lines: 0, marker_id: null };
    const { keep, marker } = fit(u, lines, capBytes);
    const stored = insertLines(sqlite, commandId, keep);
    if (marker !== undefined) {
      if (u.marker_id === null) {
        const m = q.insert.get(commandId, lines.at(-1)!.ts, 'system', marker) as StoredLogLine;
        u.marker_id = m.id;
        stored.push(m);
      } else q.setMarker.run(marker, u.marker_id);
    }
    q.saveUsage.run({ id: commandId, bytes: u.bytes, lines: u.lines, droppedBytes: u.dropped_bytes, droppedLines: u.dropped_lines, markerId: u.marker_id });
    return stored;
  });
  return exclusive(db, sqlite, () => run());
}

/**
 * The cap applied to one append (pure): the lines kept, in order, until one does not fit, and,
 * when any was dropped, the marker's new text. Updates `u`'s counts (not its marker_id).
 */
function fit(u: Usage, lines: NewLogLine[], capBytes: number): { keep: NewLogLine[]; marker: string | undefined } {
  const keep: NewLogLine[] = [];
  let i = 0;
  if (u.marker_id === null) {
    for (; i < lines.length; i++) {
      const size = Buffer.byteLength(lines[i]!.text);
      if (u.bytes + size > capBytes) break;
      keep.push(lines[i]!);
      u.bytes += size;
      u.lines++;
    }
  }
  if (i === lines.length) return { keep, marker: undefined };
  for (; i < lines.length; i++) {
    u.dropped_bytes += Buffer.byteLength(lines[i]!.text);
    u.dropped_lines++;
  }
  return { keep, marker: truncationMarker(capBytes, u.dropped_bytes, u.dropped_lines) };
}

/**
 * PostgreSQL twin of appendLogs: the same steps in one transaction. Appends for one command may
 * arrive through two replicas at once, so the usage row is created if missing (ON CONFLICT DO
 * NOTHING) and then locked FOR UPDATE before it is read: the second append waits for the first's
 * commit and counts its bytes. The kept lines go in one INSERT (ids increase in VALUES order).
 */
async function appendLogsPostgres(db: Db, commandId: number, lines: NewLogLine[], capBytes: number): Promise<StoredLogLine[]> {
  return db.transaction().execute(async (trx) => {
    await sql`INSERT INTO command_log_usage (command_id, bytes, lines, dropped_bytes, dropped_lines, marker_id)
      VALUES (${commandId}, 0, 0, 0, 0, NULL) ON CONFLICT (command_id) DO NOTHING`.execute(trx);
    const u = (await sql<Usage>`SELECT bytes, lines, dropped_bytes, dropped_lines, marker_id FROM command_log_usage WHERE command_id = ${commandId} FOR UPDATE`.execute(trx)).rows[0]!;
    const { keep, marker } = fit(u, lines, capBytes);
    const stored: StoredLogLine[] =
      keep.length === 0
        ? []
        : await trx
            .insertInto('command_logs')
            .values(keep.map((l) => ({ command_id: commandId, ts: l.ts, stream: l.stream, text: l.text })))
            .returning(['id', 'ts', 'stream', 'text'])
            .execute();
    stored.sort((a, b) => a.id - b.id);
    if (marker !== undefined) {
      if (u.marker_id === null) {
        const m = await trx.insertInto('command_logs').values({ command_id: commandId, ts: lines.at(-1)!.ts, stream: 'system', text: marker }).returning(['id', 'ts', 'stream', 'text']).executeTakeFirstOrThrow();
        u.marker_id = m.id;
        stored.push(m);
      } else await trx.updateTable('command_logs').set({ text: marker }).where('id', '=', u.marker_id).execute();
    }
    await trx
      .updateTable('command_log_usage')
      .set({ bytes: u.bytes, lines: u.lines, dropped_bytes: u.dropped_bytes, dropped_lines: u.dropped_lines, marker_id: u.marker_id })
      .where('command_id', '=', commandId)
      .execute();
    return stored;
  });
}

export async function readLogs(db: Db, commandId: number, afterId: number, limit: number) {
  return db
    .selectFrom('command_logs')
    .select(['id', 'ts', 'stream', 'text'])
    .where('command_id', '=', commandId)
    .where('id', '>', afterId)
    .orderBy('id')
    .limit(limit)
    .execute();
}
