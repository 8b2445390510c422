/**
 * Wakes held long-polls the moment work may be there for them: in-process, no database polling.
 * A submission wakes one waiter of its target (the oldest); a waiter that finds nothing, or whose
 * client has gone, passes the wake-up on, so a command is never left waiting behind a dead poll.
 */
export type WakeReason = 'work' | 'agent' | 'timeout' | 'aborted' | 'revoked';

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
  private closed = false;

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
      // After closeAll (shutdown) nothing is held any more: a poll arriving late is answered at once.
      if (signal?.aborted || this.closed) return resolve('aborted');
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

  /** Work was queued for `key`: wake its oldest waiter. Returns whether one was woken. */
  notify(key: string): boolean {
    const set = this.byKey.get(key);
    const first = set?.values().next().value;
    if (!first) return false;
    first.resolve('work');
    return true;
  }

  /** Something concerns this agent itself (e.g. a cancellation): wake its polls. */
  notifyAgent(agentId: string): void {
    for (const w of [...(this.byAgent.get(agentId) ?? [])]) w.resolve('agent');
  }

  /** The agent was revoked: its held polls end now (answered as revoked), and it is never held again. */
  revokeAgent(agentId: string): void {
    this.revoked.add(agentId);
    for (const w of [...(this.byAgent.get(agentId) ?? [])]) w.resolve('revoked');
  }

  /** Ends every held poll, and every poll after it (shutdown). */
  closeAll(): void {
    this.closed = true;
    for (const set of [...this.byKey.values()]) for (const w of [...set]) w.resolve('aborted');
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
