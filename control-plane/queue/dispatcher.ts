/**
 * Wakes held long-polls the moment work may be there for them: in-process, no database polling.
 * A submission wakes one waiter of its target (the oldest); a waiter that finds nothing, or whose
 * client has gone, passes the wake-up on, so a command is never left waiting behind a dead poll.
 *
 * With several replicas on one database, each wake-up is also published to the others through a
 * {@link Notifier} (notifier.ts), which wake their own waiters the same way; and since a published
 * wake-up can be lost, the replica sweeps every few seconds (app.ts): one query for the targets
 * with queued work, and sweep() wakes a held poll of each (one query a sweep, not one per poll).
 */
import { InProcessNotifier, type Notifier, type NotifyTopic } from './notifier.ts';
import { drainSpreadSeconds } from './drain.plan.ts';

/**
 * Why a held poll ended: work for its key, something for its agent, its time is up, its client
 * left, the agent was revoked, the periodic sweep (look at the queue, then wait again), or the
 * replica is draining (shutting down: answered 503 so the agent moves to another replica).
 */
export type WakeReason = 'work' | 'agent' | 'timeout' | 'aborted' | 'revoked' | 'sweep' | 'draining';

export interface DispatcherOptions {
  /** Carries wake-ups to other replicas (default: alone, nobody to tell). */
  notifier?: Notifier;
}

interface Waiter {
  key: string;
  agentId: string;
  resolve: (r: WakeReason) => void;
}

export class Dispatcher {
  private readonly byKey = new Map<string, Set<Waiter>>();
  private readonly byAgent = new Map<string, Set<Waiter>>();
  /** Agents revoked while this process runs: a poll of theirs that got past authentication before the revocation is never held. */
  private readonly revoked = new Set<string>();
  private draining = false;
  readonly notifier: Notifier;
  private readonly revokedHandlers: ((agentId: string) => void)[] = [];
  private readonly resyncHandlers: (() => void)[] = [];
  private readonly commandHandlers: ((id: number, fromLogId: number | undefined) => void)[] = [];

  constructor(o: DispatcherOptions = {}) {
    this.notifier = o.notifier ?? new InProcessNotifier();
    this.notifier.subscribe((topic, payload) => this.fromElsewhere(topic, payload));
    // Wake-ups may have been lost: every held poll looks at the queue now, and whoever else asked.
    this.notifier.onResync?.(() => {
      for (const set of [...this.byKey.values()]) for (const w of [...set]) w.resolve('sweep');
      for (const f of this.resyncHandlers) f();
    });
  }

  /** A wake-up published by another replica: acted on here as if it had happened here. */
  private fromElsewhere(topic: NotifyTopic, payload: string): void {
    switch (topic) {
      case 'work':
        this.wake(payload);
        return;
      case 'agent':
        this.wakeAgent(payload, 'agent');
        return;
      case 'revoke':
        this.revokeHere(payload);
        return;
      case 'command': {
        const m = /^([1-9][0-9]{0,15})(?::([1-9][0-9]{0,15}))?$/.exec(payload);
        if (m) for (const f of this.commandHandlers) f(Number(m[1]), m[2] === undefined ? undefined : Number(m[2]));
        return;
      }
    }
  }

  /** Waiters currently held (the long-polls gauge). */
  get held(): number {
    let n = 0;
    for (const s of this.byKey.values()) n += s.size;
    return n;
  }

  static key(aid: string, cid: string, nid: string | null): string {
    return nid === null ? `${aid}/${cid}` : `${aid}/${cid}/${nid}`;
  }

  wait(key: string, agentId: string, timeoutMs: number, signal?: AbortSignal): Promise<WakeReason> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve('aborted');
      // Once draining (shutdown) nothing is held any more: a poll arriving late is answered at once.
      if (this.draining) return resolve('draining');
      if (this.revoked.has(agentId)) return resolve('revoked');
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        key,
        agentId,
        resolve: (r) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          this.remove(waiter);
          resolve(r);
        },
      };
      const onAbort = () => waiter.resolve('aborted');
      timer = setTimeout(() => waiter.resolve('timeout'), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      add(this.byKey, key, waiter);
      add(this.byAgent, agentId, waiter);
    });
  }

  /** Work was queued for `key`: wake its oldest waiter here, and tell the other replicas. Returns whether one was woken here. */
  notify(key: string): boolean {
    this.notifier.publish('work', key);
    return this.wake(key);
  }

  private wake(key: string): boolean {
    const set = this.byKey.get(key);
    const first = set?.values().next().value;
    if (!first) return false;
    first.resolve('work');
    return true;
  }

  /** The keys with a poll held here (what a sweep asks the database about). */
  get heldKeys(): string[] {
    return [...this.byKey.keys()];
  }

  /** The safety net: `keys` have queued work (a wake-up for them may have been lost): wake a held poll of each. Returns how many. */
  sweep(keys: Iterable<string>): number {
    let n = 0;
    for (const key of keys) {
      const first = this.byKey.get(key)?.values().next().value;
      if (first) {
        first.resolve('sweep');
        n++;
      }
    }
    return n;
  }

  /** Something concerns this agent itself (e.g. a cancellation): wake its polls, on every replica. */
  notifyAgent(agentId: string): void {
    this.notifier.publish('agent', agentId);
    this.wakeAgent(agentId, 'agent');
  }

  private wakeAgent(agentId: string, reason: WakeReason): void {
    for (const w of [...(this.byAgent.get(agentId) ?? [])]) w.resolve(reason);
  }

  /** The agent was revoked: its held polls end now (answered as revoked) on every replica, and it is never held again. */
  revokeAgent(agentId: string): void {
    this.notifier.publish('revoke', agentId);
    this.revokeHere(agentId);
  }

  private revokeHere(agentId: string): void {
    this.revoked.add(agentId);
    this.wakeAgent(agentId, 'revoked');
    for (const f of this.revokedHandlers) f(agentId);
  }

  /** Runs for every revocation, made here or on another replica (close the agent's connections, forget cached certificates). */
  onRevoked(f: (agentId: string) => void): void {
    this.revokedHandlers.push(f);
  }

  /** Runs when wake-ups from other replicas may have been lost (a notification connection came back). */
  onResync(f: () => void): void {
    this.resyncHandlers.push(f);
  }

  /** A command's state changed here, or log lines from `fromLogId` on were stored: other replicas' followers should look. */
  commandChanged(id: number, fromLogId?: number): void {
    this.notifier.publish('command', fromLogId === undefined ? String(id) : `${id}:${fromLogId}`);
  }

  /** Runs for every command change published by another replica. */
  onCommandChanged(f: (id: number, fromLogId: number | undefined) => void): void {
    this.commandHandlers.push(f);
  }

  /** Over how many seconds the drain asks the agents it held to come back (drain.plan.ts). */
  drainSpreadSeconds = 1;

  /**
   * Ends every held poll as draining, and every poll after it (shutdown: the agents move to
   * another replica, or come back over drainSpreadSeconds, sized by how many were held).
   */
  drain(): void {
    this.draining = true;
    this.drainSpreadSeconds = drainSpreadSeconds(this.held);
    for (const set of [...this.byKey.values()]) for (const w of [...set]) w.resolve('draining');
  }

  private remove(w: Waiter) {
    del(this.byKey, w.key, w);
    del(this.byAgent, w.agentId, w);
  }
}

function add<K, V>(m: Map<K, Set<V>>, k: K, v: V) {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
}
function del<K, V>(m: Map<K, Set<V>>, k: K, v: V) {
  const s = m.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}
