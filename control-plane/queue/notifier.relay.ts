/**
 * `follow` across replicas. A follower (GET /v1/commands/{id}/logs?follow=1) listens to this
 * replica's `queue.events` for `cmd:<id>`; lines and states written through another replica arrive
 * here as a wake-up only (notifier.ts: `command` with the id and the first new line's id), and are
 * read back from the shared database and emitted to the local followers, as if written here.
 *
 * Only commands someone follows on this replica are read; per command, one read at a time. A
 * follower skips lines it has by id, and re-reads the rest itself when the command ends, so a
 * lost wake-up delays a line, never loses it.
 */
import type { EventEmitter } from 'node:events';
import type { Logger } from '../../common/logger.ts';
import type { Db } from '../db/database.ts';
import { readLogs } from '../db/logs.repository.ts';
import { getCommandById } from '../db/commands.repository.ts';
import type { CommandEvent } from './queue.service.ts';

interface Cursor {
  /** The newest line emitted here. */
  lastLogId: number;
  lastState: string | undefined;
  reading: Promise<void>;
}

const PAGE = 1000;

export class CommandRelay {
  private readonly cursors = new Map<number, Cursor>();
  private readonly d: { db: Db; events: EventEmitter; log: Logger };

  constructor(d: { db: Db; events: EventEmitter; log: Logger }) {
    this.d = d;
  }

  /** Another replica changed command `id` (stored lines from `fromLogId` on, or its state). */
  poke(id: number, fromLogId: number | undefined): void {
    const channel = `cmd:${id}`;
    if (this.d.events.listenerCount(channel) === 0) {
      this.cursors.delete(id);
      return;
    }
    let c = this.cursors.get(id);
    if (!c) {
      // Lines before this wake-up were stored before it was sent: a follower that is listening now
      // read them from the database itself (it subscribes first, then reads).
      c = { lastLogId: fromLogId === undefined ? Number.MAX_SAFE_INTEGER : fromLogId - 1, lastState: undefined, reading: Promise.resolve() };
      this.cursors.set(id, c);
    } else if (fromLogId !== undefined && c.lastLogId === Number.MAX_SAFE_INTEGER) {
      c.lastLogId = fromLogId - 1;
    }
    const cursor = c;
    cursor.reading = cursor.reading.then(() => this.read(id, channel, cursor)).catch((err: unknown) => this.d.log.warn({ err, commandId: id }, 'cannot relay a command change from another replica'));
  }

  private async read(id: number, channel: string, c: Cursor): Promise<void> {
    if (c.lastLogId !== Number.MAX_SAFE_INTEGER) {
      for (;;) {
        const batch = await readLogs(this.d.db, id, c.lastLogId, PAGE);
        for (const l of batch) this.d.events.emit(channel, { kind: 'log', id: l.id, ts: l.ts, stream: l.stream, text: l.text } satisfies CommandEvent);
        if (batch.length) c.lastLogId = batch[batch.length - 1]!.id;
        if (batch.length < PAGE) break;
      }
    }
    const row = await getCommandById(this.d.db, id);
    if (row && row.state !== c.lastState) {
      c.lastState = row.state;
      this.d.events.emit(channel, { kind: 'state', state: row.state } satisfies CommandEvent);
    }
    if (this.d.events.listenerCount(channel) === 0) this.cursors.delete(id);
  }
}
