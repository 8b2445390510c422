import assert from 'node:assert/strict';
import { KeyedQueue } from '../../cluster-agent/steps/keyed-queue.ts';

describe('KeyedQueue (one run per tofu state / helm release)', () => {
  it('runs work on one key one at a time, in arrival order, even when a run fails', async () => {
    const q = new KeyedQueue();
    const events: string[] = [];
    const job = (name: string, fail = false) => async () => {
      events.push(`${name} start`);
      await new Promise((r) => setTimeout(r, 5));
      events.push(`${name} end`);
      if (fail) throw new Error(name);
      return name;
    };
    const a = q.run('ns/state', job('a', true));
    assert.equal(q.busy('ns/state'), true);
    const b = q.run('ns/state', job('b'));
    await assert.rejects(a, /a/);
    assert.equal(await b, 'b');
    assert.deepEqual(events, ['a start', 'a end', 'b start', 'b end']);
    assert.equal(q.busy('ns/state'), false, 'the key is released when its queue drains');
  });

  it('runs different keys concurrently', async () => {
    const q = new KeyedQueue();
    const events: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const x = q.run('x', async () => {
      events.push('x start');
      await gate;
      events.push('x end');
    });
    const y = q.run('y', async () => {
      events.push('y ran');
      release();
    });
    await Promise.all([x, y]);
    assert.deepEqual(events, ['x start', 'y ran', 'x end']);
  });
});
