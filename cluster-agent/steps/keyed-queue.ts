/**
 * Runs work one at a time per key (a tofu state, a helm release), in arrival order, within this
 * agent process; different keys run concurrently.
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Whether something is running or waiting on `key`. */
  busy(key: string): boolean {
    return this.tails.has(key);
  }

  /** Runs `fn` after every earlier run on the same key has settled. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const mine = (this.tails.get(key) ?? Promise.resolve()).then(fn, fn);
    const tail = mine.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    try {
      return await mine;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

/** When this agent process started: a lock or pending operation begun before that was a previous process's. */
export const AGENT_STARTED_AT = performance.timeOrigin;
