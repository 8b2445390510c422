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
import { Deadlines } from './deadlines.ts';

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

/**
 * The client of a held request leaving: `aborted` once it left, and the held poll, if any, ended
 * then. One plain object per held request, where an `AbortController` brought an `AbortSignal`, its
 * event-target state and a listener record per poll (docs/performance.md, "what each held agent
 * keeps in the V8 heap").
 */
export class HoldSignal {
  /** A request that is not held: never aborted, never attached to a waiter. */
  static readonly never = new HoldSignal();
  aborted = false;
  /** The waiter holding the request, while one does. */
  waiter: Waiter | undefined = undefined;

  abort(): void {
    if (this.aborted || this === HoldSignal.never) return;
    this.aborted = true;
    this.waiter?.owner.finish(this.waiter, 'aborted', true);
  }
}

/** One held poll: a plain record in the dispatcher's tables and its deadline heap (no closure or timer of its own). */
class Waiter {
  readonly owner: Dispatcher;
  readonly key: string;
  readonly agentId: string;
  readonly deadline: number;
  resolve: ((r: WakeReason) => void) | undefined;
  hold: HoldSignal | undefined;

  constructor(owner: Dispatcher, key: string, agentId: string, deadline: number, resolve: (r: WakeReason) => void, hold: HoldSignal | undefined) {
    this.owner = owner;
    this.key = key;
    this.agentId = agentId;
    this.deadline = deadline;
    this.resolve = resolve;
    this.hold = hold;
  }

  /** Ended (woken, timed out, its client gone …): its promise is resolved. What the deadline heap reads. */
  get ended(): boolean {
    return this.resolve === undefined;
  }
}

/** Waiters by key or agent: most keys hold one, kept as it is; a second makes it a Set (insertion order: the oldest first). */
type Slot = Waiter | Set<Waiter>;

/**
 * How long an empty pick is trusted (see Dispatcher.knownEmpty): an idle agent re-polls every
 * 25 s, so at most one of its polls in three runs the pick statement.
 */
export const EMPTY_PICK_TRUST_MS = 60_000;
/** Keys whose last pick found nothing, at most (beyond it the marks are forgotten: the picks run again). */
const EMPTY_PICK_MARKS_MAX = 100_000;

export class Dispatcher {
  private readonly byKey = new Map<string, Slot>();
  /**
   * Keys whose last pick (the claim's read of the oldest queued command) found nothing, and when;
   * used only when this process is alone on its database (the notifier is not shared). Every
   * wake-up of a key drops its mark; `wakeUps` counts all of them, so a pick that overlapped one
   * leaves no mark. See knownEmpty() for why a poll may skip the pick.
   */
  private readonly emptyPicks = new Map<string, number>();
  private wakeUps = 0;
  private readonly byAgent = new Map<string, Slot>();
  private heldCount = 0;
  private readonly deadlines = new Deadlines<Waiter>((w) => this.finish(w, 'timeout', false));
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
      this.wakeUps++;
      this.emptyPicks.clear();
      for (const w of this.all()) this.finish(w, 'sweep', true);
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
    return this.heldCount;
  }

  static key(aid: string, cid: string, nid: string | null): string {
    return nid === null ? `${aid}/${cid}` : `${aid}/${cid}/${nid}`;
  }

  /** Holds a poll of `key` until it is woken, `timeoutMs` passes, or `hold` is aborted (its client left). */
  wait(key: string, agentId: string, timeoutMs: number, hold?: HoldSignal): Promise<WakeReason> {
    return new Promise((resolve) => {
      if (hold?.aborted) return resolve('aborted');
      // Once draining (shutdown) nothing is held any more: a poll arriving late is answered at once.
      if (this.draining) return resolve('draining');
      if (this.revoked.has(agentId)) return resolve('revoked');
      const attach = hold !== undefined && hold !== HoldSignal.never;
      const w = new Waiter(this, key, agentId, Date.now() + timeoutMs, resolve, attach ? hold : undefined);
      if (attach) hold.waiter = w;
      this.heldCount++;
      add(this.byKey, key, w);
      add(this.byAgent, agentId, w);
      this.deadlines.add(w);
    });
  }

  /**
   * Ends a held poll (once): out of the tables, detached from its request, its promise resolved.
   * `early`: before its deadline (the heap then drops its entry later). For Waiter and HoldSignal only.
   */
  finish(w: Waiter, reason: WakeReason, early: boolean): void {
    const resolve = w.resolve;
    if (resolve === undefined) return;
    w.resolve = undefined;
    if (w.hold) w.hold.waiter = undefined;
    w.hold = undefined;
    del(this.byKey, w.key, w);
    del(this.byAgent, w.agentId, w);
    // Nothing held: the timer stops (a closing server is not kept up by a poll's deadline).
    if (--this.heldCount === 0) this.deadlines.clear();
    else if (early) this.deadlines.ended();
    resolve(reason);
  }

  /** Every held poll, copied (ending them changes the tables). */
  private all(): Waiter[] {
    const out: Waiter[] = [];
    for (const slot of this.byKey.values()) {
      if (slot instanceof Set) out.push(...slot);
      else out.push(slot);
    }
    return out;
  }

  /** Work was queued for `key`: wake its oldest waiter here, and tell the other replicas. Returns whether one was woken here. */
  notify(key: string): boolean {
    this.notifier.publish('work', key);
    return this.wake(key);
  }

  /**
   * Whether a poll of `key` may skip the pick: this process's last pick for the key found nothing,
   * less than EMPTY_PICK_TRUST_MS ago, and nothing was queued for the key since. That last part is
   * what every way a command becomes queued guarantees: each one commits and then calls notify()
   * for the command's key in this process (a submission, a retryable failure's requeue, a lease
   * expired by the reaper, a claim given back: queue.service.ts), and notify() drops the key's mark
   * (wake) before anything else can run. Why that keeps every command claimable:
   * - a command queued before an empty pick's statement ran would have been found by it (SQLite:
   *   one connection, statements in order), so an empty pick's mark is only set if no wake-up of
   *   any key happened between reading `wakeUps` before the pick and the mark (markEmpty); a claim
   *   that found a command but could not take it (its agent revoked meanwhile) leaves no mark;
   * - a command queued after it drops the mark through its notify(), so the next poll picks;
   * - a restart starts with no marks (the first poll of every agent picks), and a command made
   *   queued by anything outside this process (another replica, PostgreSQL) could not be seen:
   *   with a shared notifier (replicas) there are no marks at all;
   * - the trust expires: a command queued by a path that does not notify (none is known) waits at
   *   most EMPTY_PICK_TRUST_MS plus one poll's wait, as against one poll's wait before.
   * The pick is ~70-80 µs of SQLite on the one thread under load (issue 18's held profile: 5.9 % of
   * the main thread with 5,000 agents held, one re-poll per agent every 25 s).
   */
  knownEmpty(key: string, now: number): boolean {
    const at = this.emptyPicks.get(key);
    if (at === undefined) return false;
    if (now - at < EMPTY_PICK_TRUST_MS) return true;
    this.emptyPicks.delete(key);
    return false;
  }

  /** The count of wake-ups so far: read before a pick, handed to markEmpty() after an empty one. */
  get wakeUpCount(): number {
    return this.wakeUps;
  }

  /**
   * A claim by `agentId` for `key` that started at `wakeUpsBefore` took nothing: mark the key,
   * unless a wake-up came between, or the agent is revoked (its claim takes nothing even when the
   * pick found a command; a revocation also drops every mark, for claims that ran before it was known here).
   */
  markEmpty(key: string, agentId: string, wakeUpsBefore: number, now: number): void {
    if (this.notifier.shared || wakeUpsBefore !== this.wakeUps || this.revoked.has(agentId)) return;
    if (this.emptyPicks.size >= EMPTY_PICK_MARKS_MAX) this.emptyPicks.clear();
    this.emptyPicks.set(key, now);
  }

  private wake(key: string): boolean {
    this.wakeUps++;
    this.emptyPicks.delete(key);
    const first = oldest(this.byKey.get(key));
    if (!first) return false;
    this.finish(first, 'work', true);
    return true;
  }

  /** The keys with a poll held here (what a sweep asks the database about). */
  get heldKeys(): string[] {
    return [...this.byKey.keys()];
  }

  /** The safety net: `keys` have queued work (a wake-up for them may have been lost): wake a held poll of each. Returns how many. */
  sweep(keys: Iterable<string>): number {
    let n = 0;
    this.wakeUps++;
    for (const key of keys) {
      this.emptyPicks.delete(key);
      const first = oldest(this.byKey.get(key));
      if (first) {
        this.finish(first, 'sweep', true);
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
    const slot = this.byAgent.get(agentId);
    if (slot === undefined) return;
    for (const w of slot instanceof Set ? [...slot] : [slot]) this.finish(w, reason, true);
  }

  /** The agent was revoked: its held polls end now (answered as revoked) on every replica, and it is never held again. */
  revokeAgent(agentId: string): void {
    this.notifier.publish('revoke', agentId);
    this.revokeHere(agentId);
  }

  private revokeHere(agentId: string): void {
    this.revoked.add(agentId);
    this.wakeUps++;
    this.emptyPicks.clear();
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
    for (const w of this.all()) this.finish(w, 'draining', true);
  }
}

function oldest(slot: Slot | undefined): Waiter | undefined {
  return slot instanceof Set ? slot.values().next().value : slot;
}
function add(m: Map<string, Slot>, k: string, w: Waiter) {
  const slot = m.get(k);
  if (slot === undefined) m.set(k, w);
  else if (slot instanceof Set) slot.add(w);
  else m.set(k, new Set([slot, w]));
}
function del(m: Map<string, Slot>, k: string, w: Waiter) {
  const slot = m.get(k);
  if (slot === w) m.delete(k);
  else if (slot instanceof Set) {
    slot.delete(w);
    if (slot.size === 0) m.delete(k);
  }
}
