/**
 * The Notifier (notifier.ts) between replicas sharing one PostgreSQL: `NOTIFY tether_wake` with
 * `<replica>\t<topic>\t<payload>`, each replica LISTENing on a dedicated connection
 * (db/listen.postgres.ts) and dropping its own. A NOTIFY reaches every listener within
 * milliseconds of being sent (after the sender's statement; publishes happen after the change
 * committed). When the connection was lost and comes back, `onResync` has every held poll look at
 * the queue at once; until then the dispatcher's sweep is the safety net.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../common/logger.ts';
import { PgListener } from '../db/listen.postgres.ts';
import { NOTIFY_TOPICS, type Notifier, type NotifyTopic } from './notifier.ts';

const CHANNEL = 'tether_wake';

export class PostgresNotifier implements Notifier {
  readonly shared = true;
  /** This replica's id in its notifications (random per start). */
  readonly replicaId = randomBytes(8).toString('hex');
  readonly listener: PgListener;
  private readonly listeners: ((topic: NotifyTopic, payload: string) => void)[] = [];
  private readonly resync: (() => void)[] = [];
  /** Notifications received from other replicas, and dropped as malformed (tests, metrics). */
  readonly stats = { received: 0, malformed: 0 };

  constructor(o: { url: string; log: Logger }) {
    this.listener = new PgListener({
      url: o.url,
      channel: CHANNEL,
      log: o.log,
      onMessage: (m) => this.receive(m),
      onReconnect: () => {
        for (const f of this.resync) f();
      },
    });
  }

  start(): Promise<void> {
    return this.listener.start();
  }

  publish(topic: NotifyTopic, payload: string): void {
    this.listener.notify(`${this.replicaId}\t${topic}\t${payload}`);
  }

  subscribe(fn: (topic: NotifyTopic, payload: string) => void): void {
    this.listeners.push(fn);
  }

  onResync(fn: () => void): void {
    this.resync.push(fn);
  }

  private receive(message: string): void {
    const [from, topic, payload, extra] = message.split('\t');
    if (from === this.replicaId) return;
    if (payload === undefined || extra !== undefined || !NOTIFY_TOPICS.includes(topic as NotifyTopic)) {
      this.stats.malformed++;
      return;
    }
    this.stats.received++;
    for (const fn of this.listeners) fn(topic as NotifyTopic, payload);
  }

  close(): Promise<void> {
    return this.listener.close();
  }
}
