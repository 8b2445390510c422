/**
 * BENCH_PIN (bench/lib/pin.ts): which CPUs the control plane and the bench's load generators get,
 * and that taskset really puts a process there.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { allowedCpus, onCpus, pinningFor } from '../../bench/lib/pin.ts';

describe('bench: pinning the control plane to a core of its own', () => {
  it('splits the CPUs: the first for the control plane, the rest for the bench', () => {
    assert.equal(pinningFor(undefined, 2), null);
    assert.equal(pinningFor('off', 8), null);
    assert.equal(pinningFor('', 8), null);
    assert.deepEqual(pinningFor('split', 2), { server: '0', others: '1' });
    assert.deepEqual(pinningFor('split', 8), { server: '0', others: '1-7' });
    assert.throws(() => pinningFor('split', 1), /two CPUs or more/);
    assert.throws(() => pinningFor('yes', 4), /split or off/);
  });

  it('leaves a command alone without pinning, and runs it through taskset with', () => {
    assert.deepEqual(onCpus(undefined, 'node', ['a.ts']), ['node', ['a.ts']]);
    assert.deepEqual(onCpus('0', 'prlimit', ['--nofile=1:1', '--', 'node']), ['taskset', ['--cpu-list', '0', 'prlimit', '--nofile=1:1', '--', 'node']]);
  });

  it('puts the process on the CPU asked for, under the same pid', async () => {
    const last = String(availableParallelism() - 1); // not the whole machine's list wherever there are two CPUs or more
    const [cmd, args] = onCpus(last, 'sleep', ['5']);
    const child = spawn(cmd, args, { stdio: 'ignore' });
    try {
      let seen: string | undefined;
      for (let i = 0; i < 50 && seen === undefined; i++) {
        await new Promise((r) => setTimeout(r, 20));
        const comm = readFileSync(`/proc/${child.pid}/comm`, 'utf8').trim();
        if (comm === 'sleep') seen = allowedCpus(child.pid!);
      }
      assert.equal(seen, last);
    } finally {
      child.kill();
    }
  });
});
