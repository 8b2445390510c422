/**
 * PostgreSQL LISTEN/NOTIFY on one dedicated connection (outside the pool: a pooled connection
 * goes back to the pool, and a LISTEN with it). The connection is re-made when it fails, with a
 * backoff of 250 ms doubling to 10 s, jittered; `onReconnect` says wake-ups may have been missed
 * meanwhile. NOTIFY goes over the same connection (it is cheap, and the pool stays for requests).
 */
import pg from 'pg';
import type { Logger } from '../../common/logger.ts';

export interface ListenerOptions {
  url: string;
  /** A plain identifier ([a-z_]+): it is written into LISTEN as is. */
  channel: string;
  log: Logger;
  onMessage(payload: string): void;
  onReconnect(): void;
}

const MAX_PAYLOAD_BYTES = 7900; // PostgreSQL refuses a payload of 8000 bytes or more

export class PgListener {
  private client: pg.Client | undefined;
  private closed = false;
  private retryMs = 250;
  private timer: NodeJS.Timeout | undefined;
  private readonly o: ListenerOptions;
  /** Connections made (the first included). */
  connects = 0;

  constructor(o: ListenerOptions) {
    if (!/^[a-z_]{1,63}$/.test(o.channel)) throw new Error(`not a channel name: ${o.channel}`);
    this.o = o;
  }

  /** Connects and listens; throws when the first connection cannot be made. */
  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    const c = new pg.Client({ connectionString: this.o.url, application_name: 'tether-notify', connectionTimeoutMillis: 10_000, keepAlive: true });
    c.on('notification', (n) => {
      if (n.channel === this.o.channel && n.payload !== undefined) this.o.onMessage(n.payload);
    });
    const lost = (err?: Error) => {
      if (this.client !== c) return;
      this.client = undefined;
      c.removeAllListeners('notification');
      void c.end().catch(() => undefined);
      if (!this.closed) {
        this.o.log.warn({ err, retryInMs: this.retryMs }, 'the notification connection to PostgreSQL failed; reconnecting');
        this.schedule();
      }
    };
    c.on('error', (err) => lost(err));
    c.on('end', () => lost());
    await c.connect();
    await c.query(`LISTEN ${this.o.channel}`);
    if (this.closed) {
      await c.end().catch(() => undefined);
      return;
    }
    this.client = c;
    this.retryMs = 250;
    if (this.connects++ > 0) {
      this.o.log.info('notification connection to PostgreSQL back');
      this.o.onReconnect();
    }
  }

  private schedule(): void {
    const delay = Math.round(this.retryMs * (0.5 + Math.random()));
    this.retryMs = Math.min(this.retryMs * 2, 10_000);
    this.timer = setTimeout(() => {
      this.connect().catch((err: unknown) => {
        if (this.closed) return;
        this.o.log.warn({ err, retryInMs: this.retryMs }, 'cannot reconnect the notification connection yet');
        this.schedule();
      });
    }, delay);
    this.timer.unref();
  }

  /** Sends a notification; lost (logged at debug) when the connection is down: the sweep covers it. */
  notify(payload: string): void {
    const c = this.client;
    if (!c || Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) return;
    c.query('SELECT pg_notify($1, $2)', [this.o.channel, payload]).catch((err: unknown) => this.o.log.debug({ err }, 'notification not sent'));
  }

  /** The backend pid of the listening connection (tests end it to exercise the reconnect). */
  async backendPid(): Promise<number | undefined> {
    const c = this.client;
    if (!c) return undefined;
    return Number((await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const c = this.client;
    this.client = undefined;
    if (c) await c.end().catch(() => undefined);
  }
}
