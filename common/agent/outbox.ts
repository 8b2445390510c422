/**
 * Results waiting to be delivered. The file outbox keeps them on disk (0600) so a result produced
 * while the control plane is unreachable, or just before the agent is restarted, still arrives.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ResultRequest } from '../wire.ts';
import { writeFileAtomic } from '../files.ts';

export interface OutboxEntry {
  commandId: number;
  result: ResultRequest;
}

export interface Outbox {
  put(e: OutboxEntry): Promise<void>;
  list(): Promise<OutboxEntry[]>;
  remove(e: OutboxEntry): Promise<void>;
}

export class MemoryOutbox implements Outbox {
  private readonly entries = new Map<string, OutboxEntry>();
  async put(e: OutboxEntry) {
    this.entries.set(`${e.commandId}-${e.result.leaseId}`, e);
  }
  async list() {
    return [...this.entries.values()];
  }
  async remove(e: OutboxEntry) {
    this.entries.delete(`${e.commandId}-${e.result.leaseId}`);
  }
}

export class FileOutbox implements Outbox {
  private readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }
  private file(e: OutboxEntry) {
    return join(this.dir, `${e.commandId}-${e.result.leaseId.replace(/[^A-Za-z0-9_-]/g, '_')}.json`);
  }
  async put(e: OutboxEntry) {
    writeFileAtomic(this.file(e), JSON.stringify(e), 0o600);
  }
  async list() {
    const out: OutboxEntry[] = [];
    for (const f of readdirSync(this.dir).filter((n) => n.endsWith('.json')).sort()) {
      try {
        out.push(JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as OutboxEntry);
      } catch {
        rmSync(join(this.dir, f), { force: true }); // a torn write cannot happen (atomic rename); anything unreadable is not ours
      }
    }
    return out;
  }
  async remove(e: OutboxEntry) {
    rmSync(this.file(e), { force: true });
  }
}
