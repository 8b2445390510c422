/**
 * One timer for every held poll's time limit: a min-heap of deadlines and a single `Timeout`
 * armed for the earliest. A `setTimeout` per held poll kept a `Timeout` object (and its closure)
 * per agent in the V8 heap, ~20,000 of them marked at every major GC with 20,000 agents held
 * (docs/performance.md, "what each held agent keeps in the V8 heap").
 *
 * An entry that ends before its deadline (woken, its client gone) is not searched for: it is marked
 * ended and dropped when it reaches the top, or when ended entries outnumber the live ones (then the
 * heap is rebuilt without them), so an agent that polls and is answered over and over keeps at most
 * about as many ended entries as there are live ones.
 */

/** What the heap keeps: a deadline, and whether the entry ended before it. */
export interface DeadlineEntry {
  readonly deadline: number;
  /** True once the owner ended the entry (early, or at its deadline); the heap then only drops it. */
  readonly ended: boolean;
}

/** Ended entries tolerated before a rebuild, at least (below it a rebuild would cost more than it frees). */
const REBUILD_MIN = 1024;

export class Deadlines<E extends DeadlineEntry> {
  private heap: E[] = [];
  private endedCount = 0;
  private timer: NodeJS.Timeout | undefined;
  /** The deadline the timer is armed for (Infinity: none). */
  private armedFor = Infinity;
  private readonly expire: (e: E) => void;

  /** `expire` runs for each entry whose deadline passed before it ended (the owner ends it there). */
  constructor(expire: (e: E) => void) {
    this.expire = expire;
  }

  /** Entries in the heap, the ended ones not yet dropped included (for tests and the rebuild rule). */
  get size(): number {
    return this.heap.length;
  }

  add(e: E): void {
    const h = this.heap;
    h.push(e);
    siftUp(h, h.length - 1);
    if (e.deadline < this.armedFor) this.arm(e.deadline);
  }

  /** An entry ended before its deadline (its `ended` now reads true). */
  ended(): void {
    this.endedCount++;
    if (this.endedCount >= REBUILD_MIN && this.endedCount * 2 > this.heap.length) this.rebuild();
  }

  /** Drops every entry and stops the timer (the owner holds nothing any more). */
  clear(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = Infinity;
    this.heap = [];
    this.endedCount = 0;
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.armedFor = at;
    this.timer = setTimeout(this.fire, Math.max(0, at - Date.now()));
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = Date.now();
    // `expire` may clear the heap (its owner's last entry ended): read it afresh each time.
    while (this.heap.length > 0 && (this.heap[0]!.ended || this.heap[0]!.deadline <= now)) {
      const top = popTop(this.heap);
      if (top.ended) this.endedCount--;
      else this.expire(top);
    }
    if (this.heap.length > 0 && this.timer === undefined) this.arm(this.heap[0]!.deadline);
  };

  private rebuild(): void {
    const live = this.heap.filter((e) => !e.ended);
    for (let i = (live.length >> 1) - 1; i >= 0; i--) siftDown(live, i);
    this.heap = live;
    this.endedCount = 0;
  }
}

function popTop<E extends DeadlineEntry>(h: E[]): E {
  const top = h[0]!;
  const last = h.pop()!;
  if (h.length > 0) {
    h[0] = last;
    siftDown(h, 0);
  }
  return top;
}

function siftUp<E extends DeadlineEntry>(h: E[], i: number): void {
  const e = h[i]!;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (h[p]!.deadline <= e.deadline) break;
    h[i] = h[p]!;
    i = p;
  }
  h[i] = e;
}

function siftDown<E extends DeadlineEntry>(h: E[], i: number): void {
  const n = h.length;
  const e = h[i]!;
  for (;;) {
    let c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && h[c + 1]!.deadline < h[c]!.deadline) c++;
    if (h[c]!.deadline >= e.deadline) break;
    h[i] = h[c]!;
    i = c;
  }
  h[i] = e;
}
