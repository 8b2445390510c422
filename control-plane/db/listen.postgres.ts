/**
 * PostgreSQL LISTEN/NOTIFY on one dedicated connection (outside the pool: a pooled connection
 * goes back to the pool, and a LISTEN with it). The connection is re-made when it fails, with a
 * backoff of 250 ms doubling to 10 s, jittered; `onReconnect` says wake-ups may have been missed
 * meanwhile. NOTIFY goes over the same connection (it is cheap, and the pool stays for requests).
 * A connection runs one query at a time (pg queues the others, warns, and pg@9 refuses them), so
 * notifications are sent one statement at a time: those raised while one is on the way wait and
 * go together in the next statement, in order.
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
/** Notifications waiting for the connection; beyond, they are dropped (the sweep covers them). */
const MAX_WAITING = 10_000;

export class PgListener {
  private client: pg.Client | undefined;
  private closed = false;
  private retryMs = 250;
  private timer: NodeJS.Timeout | undefined;
  private readonly o: ListenerOptions;
  /** Connections made (the first included). */
  connects = 0;
  /** Payloads raised while a statement was on the connection, sent by the next one. */
  private waiting: string[] = [];
  /** Whether the sender loop runs (it sends what waits until nothing does). */
  private sending = false;
  /** The end of the last statement given to the connection: the next one starts after it. */
  private tail: Promise<unknown> = Promise.resolve();

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
    if (!this.client || Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) return;
    if (this.waiting.length >= MAX_WAITING) return void this.o.log.debug('notification not sent: too many waiting');
    this.waiting.push(payload);
    if (!this.sending) {
      this.sending = true;
      void this.sendWaiting();
    }
  }

  /** Sends what waits, one statement at a time, until nothing does. */
  private async sendWaiting(): Promise<void> {
    try {
      while (this.waiting.length > 0) {
        const c = this.client;
        const batch = this.waiting;
        this.waiting = [];
        if (!c) return;
        await this.exclusive(() =>
          batch.length === 1
            ? c.query('SELECT pg_notify($1, $2)', [this.o.channel, batch[0]])
            : c.query('SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n', [this.o.channel, batch]),
        ).catch((err: unknown) => this.o.log.debug({ err, notifications: batch.length }, 'notifications not sent'));
      }
    } finally {
      // Synchronously after the last check: a notify() from here on starts the loop again.
      this.sending = false;
    }
  }

  /** Runs `q` after every statement given to the connection before it has ended. */
  private exclusive<T>(q: () => Promise<T>): Promise<T> {
    const run = this.tail.then(q, q);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** The backend pid of the listening connection (tests end it to exercise the reconnect). */
  async backendPid(): Promise<number | undefined> {
    const c = this.client;
    if (!c) return undefined;
    return Number((await this.exclusive(() => c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'))).rows[0]?.pid);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const c = this.client;
    this.client = undefined;
    if (c) await c.end().catch(() => undefined);
  }
}
