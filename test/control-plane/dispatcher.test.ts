/**
 * The held polls' table (queue/dispatcher.ts) and its one timer for every deadline
 * (queue/deadlines.ts), without a server: each held poll is a plain record, ended exactly once by
 * its wake-up, its deadline, its client leaving, a revocation or a drain; and no timer is left
 * running once nothing is held (a closing server is not kept up by a poll's deadline).
 * Real timers, deadlines of a few milliseconds; only outcomes and order are asserted.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Deadlines, type DeadlineEntry } from '../../control-plane/queue/deadlines.ts';
import { Dispatcher, HoldSignal } from '../../control-plane/queue/dispatcher.ts';

const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('queue: held polls with one timer for every deadline', () => {
  it('expires entries in deadline order, whatever the order they were added in, and never an ended one', async () => {
    const expired: string[] = [];
    const d = new Deadlines<DeadlineEntry & { name: string }>((e) => expired.push(e.name));
    const now = Date.now();
    const entries = [40, 10, 30, 20, 50].map((ms) => ({ name: `t${ms}`, deadline: now + ms, ended: false }));
    for (const e of entries) d.add(e);
    entries[2]!.ended = true; // t30 ends early
    d.ended();
    await sleep(120);
    assert.deepEqual(expired, ['t10', 't20', 't40', 't50']);
    assert.equal(d.size, 0, 'every entry dropped');
  });

  it('rebuilds the heap without its ended entries once they outnumber the live ones', async () => {
    const expired: number[] = [];
    const d = new Deadlines<DeadlineEntry & { i: number }>((e) => expired.push(e.i));
    const far = Date.now() + 60_000;
    const entries = Array.from({ length: 3000 }, (_, i) => ({ i, deadline: far + i, ended: false }));
    for (const e of entries) d.add(e);
    for (const e of entries.slice(0, 2000)) {
      e.ended = true;
      d.ended();
    }
    assert.ok(d.size <= 2000, `ended entries are dropped by a rebuild (size ${d.size})`);
    assert.ok(d.size >= 1000, 'the live ones stay');
    // The rebuilt heap still orders: an entry due before all of its live ones expires, alone.
    const soon = { i: -1, deadline: Date.now() + 5, ended: false };
    d.add(soon);
    await sleep(40);
    assert.deepEqual(expired, [-1]);
    d.clear();
    assert.equal(d.size, 0);
  });

  it('ends a held poll by its deadline, its client leaving or a wake-up, once each, and counts what is held', async () => {
    const d = new Dispatcher();
    const before = timeouts();
    const hold = new HoldSignal();
    const timedOut = d.wait('a/c1', 'ag1', 20);
    const left = d.wait('a/c2', 'ag2', 60_000, hold);
    const woken = d.wait('a/c3', 'ag3', 60_000);
    assert.equal(d.held, 3);
    assert.equal(timeouts(), before + 1, 'one timer for the three');
    hold.abort();
    hold.abort(); // a second 'close' changes nothing
    assert.equal(await left, 'aborted');
    assert.equal(hold.waiter, undefined, 'the request no longer points at its ended poll');
    assert.equal(d.notify('a/c3'), true);
    assert.equal(await woken, 'work');
    assert.equal(await timedOut, 'timeout');
    assert.equal(d.held, 0);
    assert.equal(d.notify('a/c3'), false, 'nothing left to wake');
  });

  it('leaves no timer running once nothing is held: a process holding none exits', () => {
    // A child process holds a poll with a minute's deadline and wakes it: it must exit at once, not
    // when the deadline's timer fires (execFileSync's timeout fails the test first).
    const dispatcher = new URL('../../control-plane/queue/dispatcher.ts', import.meta.url).href;
    const script = `import { Dispatcher } from ${JSON.stringify(dispatcher)};
      const d = new Dispatcher();
      const p = d.wait('k', 'ag', 60_000);
      d.notify('k');
      console.log(await p, d.held);`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 15_000 });
    assert.equal(out.trim(), 'work 0');
  });

  it('wakes the oldest poll of a key first, and a poll whose client already left is never held', async () => {
    const d = new Dispatcher();
    const gone = new HoldSignal();
    gone.abort();
    assert.equal(await d.wait('k', 'ag0', 60_000, gone), 'aborted');
    assert.equal(d.held, 0);
    const order: string[] = [];
    const polls = ['ag1', 'ag2', 'ag3'].map((a) => d.wait('k', a, 60_000).then((r) => order.push(`${a}:${r}`)));
    d.notify('k');
    d.notify('k');
    await sleep(1);
    assert.deepEqual(order, ['ag1:work', 'ag2:work']);
    d.drain();
    await Promise.all(polls);
    assert.deepEqual(order, ['ag1:work', 'ag2:work', 'ag3:draining']);
    assert.equal(await d.wait('k', 'ag4', 60_000), 'draining', 'nothing is held once draining');
  });

  it('ends every poll of a revoked agent, on every key, and holds none of its polls after', async () => {
    const d = new Dispatcher();
    const mine = [d.wait('k1', 'bad', 60_000), d.wait('k2', 'bad', 60_000)];
    const other = d.wait('k1', 'good', 60_000);
    d.revokeAgent('bad');
    assert.deepEqual(await Promise.all(mine), ['revoked', 'revoked']);
    assert.equal(d.held, 1);
    assert.equal(await d.wait('k3', 'bad', 60_000), 'revoked');
    assert.equal(d.notify('k1'), true, "the other agent's poll is still held");
    assert.equal(await other, 'work');
  });
});
