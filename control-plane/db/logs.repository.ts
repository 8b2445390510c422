import { exclusive, prepared, sqliteOf, type Db } from './database.ts';

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
  const sqlite = sqliteOf(db);
  const q = stmts(sqlite);
  const run = sqlite.transaction((): StoredLogLine[] => {
    const u = (q.usage.get(commandId) as Usage | undefined) ?? { bytes: 0, lines: 0, dropped_bytes: 0, dropped_lines: 0, marker_id: null };
    const stored: StoredLogLine[] = [];
    let i = 0;
    if (u.marker_id === null) {
      for (; i < lines.length; i++) {
        const l = lines[i]!;
        const size = Buffer.byteLength(l.text);
        if (u.bytes + size > capBytes) break;
        stored.push(q.insert.get(commandId, l.ts, l.stream, l.text) as StoredLogLine);
        u.bytes += size;
        u.lines++;
      }
    }
    if (i < lines.length) {
      for (; i < lines.length; i++) {
        u.dropped_bytes += Buffer.byteLength(lines[i]!.text);
        u.dropped_lines++;
      }
      const text = truncationMarker(capBytes, u.dropped_bytes, u.dropped_lines);
      if (u.marker_id === null) {
        const marker = q.insert.get(commandId, lines.at(-1)!.ts, 'system', text) as StoredLogLine;
        u.marker_id = marker.id;
        stored.push(marker);
      } else q.setMarker.run(text, u.marker_id);
    }
    q.saveUsage.run({ id: commandId, bytes: u.bytes, lines: u.lines, droppedBytes: u.dropped_bytes, droppedLines: u.dropped_lines, markerId: u.marker_id });
    return stored;
  });
  return exclusive(db, sqlite, () => run());
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
