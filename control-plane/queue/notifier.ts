/**
 * Wake-ups between control-plane replicas. The dispatcher wakes its own held polls at once, in
 * process; a Notifier carries the same wake-up to the *other* replicas sharing the database, so a
 * command submitted on replica A wakes a poll held on replica B, a cancellation or revocation
 * reaches an agent held anywhere, and a log line written through A reaches a `follow` on B.
 *
 * - {@link InProcessNotifier}: replicas in one process sharing a {@link NotifierHub}. One server
 *   alone has a hub of its own, which has no one else to tell: today's single-process behaviour.
 * - PostgreSQL `LISTEN/NOTIFY` (notifier.postgres.ts): one dedicated connection per replica.
 *
 * Delivery is at most once and may be lost (a reconnect, a replica busy restarting): held polls
 * also re-check the queue every few seconds when replicas are shared (`shared`), and heartbeats
 * carry cancellations, so a lost wake-up delays work by a sweep interval, never loses it.
 */

/** What a wake-up is about; the payload is a string of at most a few hundred bytes. */
export type NotifyTopic =
  /** Work was queued for a dispatcher key (`aid/cid[/nid]`). */
  | 'work'
  /** Something concerns an agent (a cancellation): its polls should return now. Payload: agent id. */
  | 'agent'
  /** An agent was revoked. Payload: agent id. */
  | 'revoke'
  /** A command's log or state changed. Payload: command id. */
  | 'command';

export const NOTIFY_TOPICS: readonly NotifyTopic[] = ['work', 'agent', 'revoke', 'command'];

export interface Notifier {
  /** Whether other replicas exist that may miss a wake-up (then held polls sweep). */
  readonly shared: boolean;
  /** Tells the other replicas (never this one: its dispatcher has acted already). */
  publish(topic: NotifyTopic, payload: string): void;
  /** Called for each wake-up published by another replica. */
  subscribe(fn: (topic: NotifyTopic, payload: string) => void): void;
  /** Called when wake-ups may have been missed (a lost connection came back): look at everything now. */
  onResync?(fn: () => void): void;
  close(): Promise<void>;
}

/** Replicas in one process (tests, and the single server's own hub). */
export class NotifierHub {
  private readonly members = new Set<InProcessNotifier>();
  join(n: InProcessNotifier): void {
    this.members.add(n);
  }
  leave(n: InProcessNotifier): void {
    this.members.delete(n);
  }
  /** Delivers to every member but `from`, after the current tick (as a network would). */
  send(from: InProcessNotifier, topic: NotifyTopic, payload: string): void {
    for (const m of this.members) if (m !== from) queueMicrotask(() => m.deliver(topic, payload));
  }
}

export class InProcessNotifier implements Notifier {
  readonly shared: boolean;
  private readonly hub: NotifierHub;
  private readonly listeners: ((topic: NotifyTopic, payload: string) => void)[] = [];

  /** Without a hub: alone, and nobody to tell. */
  constructor(hub?: NotifierHub) {
    this.shared = hub !== undefined;
    this.hub = hub ?? new NotifierHub();
    this.hub.join(this);
  }

  publish(topic: NotifyTopic, payload: string): void {
    if (this.shared) this.hub.send(this, topic, payload);
  }

  subscribe(fn: (topic: NotifyTopic, payload: string) => void): void {
    this.listeners.push(fn);
  }

  deliver(topic: NotifyTopic, payload: string): void {
    for (const fn of this.listeners) fn(topic, payload);
  }

  async close(): Promise<void> {
    this.hub.leave(this);
  }
}
