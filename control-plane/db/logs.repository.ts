import type { Db } from './database.ts';

export async function appendLogs(db: Db, commandId: number, lines: { ts: number; stream: string; text: string }[]) {
  if (lines.length === 0) return [];
  return db
    .insertInto('command_logs')
    .values(lines.map((l) => ({ command_id: commandId, ts: l.ts, stream: l.stream, text: l.text })))
    .returning(['id', 'ts', 'stream', 'text'])
    .execute();
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
