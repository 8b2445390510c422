/** Ships a command's log lines to the control plane in batches, masked by the agent's one masker (the agent runtime's). */
import type { Logger } from '../logger.ts';
import type { ClaimedCommand, LogLine } from '../wire.ts';
import type { AgentClient } from './agent-client.ts';
import type { Masker } from './masker.ts';

/** Batches a command's log lines to the control plane (best effort, bounded memory). */
export class LogShipper {
  private buf: LogLine[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> = Promise.resolve();
  private dropped = 0;
  private readonly client: AgentClient;
  private readonly command: ClaimedCommand;
  private readonly masker: Masker;
  private readonly log: Logger;

  constructor(client: AgentClient, command: ClaimedCommand, masker: Masker, log: Logger) {
    this.client = client;
    this.command = command;
    this.masker = masker;
    this.log = log;
  }

  push(stream: LogLine['stream'], text: string): void {
    // Masked whole before it is split: a multi-line value in one emitted text is masked whole.
    for (const line of this.masker.apply(text).split('\n')) {
      if (this.buf.length >= 10_000) {
        this.dropped++;
        continue;
      }
      this.buf.push({ ts: new Date().toISOString(), stream, text: line.slice(0, 16_000) });
    }
    if (this.buf.length >= 500) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), 500);
  }

  private flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.sending = this.sending.then(async () => {
      while (this.buf.length) {
        const batch = this.buf.slice(0, 1000);
        try {
          await this.client.logs(this.command.id, this.command.leaseId, batch);
          this.buf.splice(0, batch.length);
        } catch (err) {
          this.log.debug({ err }, 'log lines not shipped');
          return;
        }
      }
    });
    return this.sending;
  }

  async close(): Promise<void> {
    if (this.dropped) this.buf.push({ ts: new Date().toISOString(), stream: 'system', text: `[${this.dropped} log lines dropped]` });
    await this.flush();
    // Not shipped (the replica went away; the client has moved to the next): twice more, a second apart.
    for (let i = 0; i < 2 && this.buf.length; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      await this.flush();
    }
  }
}
