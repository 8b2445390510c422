/**
 * The bench's record of the machine (bench/lib/machine.ts): /proc/stat's cpu line as this kernel
 * prints it, the steal and busy shares between two readings, and the speed probe on this machine.
 */
import assert from 'node:assert/strict';
import { cpuShares, cpuTimes, parseCpuTimes, speedProbeMs } from '../../bench/lib/machine.ts';

describe('bench: the machine during a run', () => {
  it('reads the all-CPU line of /proc/stat, steal included, and refuses what is not one', () => {
    const stat = 'cpu  3277324 63859 633493 12848238 41967 0 98533 42323 0 0\ncpu0 1638662 31929 316746 6424119 20983 0 49266 21161 0 0\nintr 1\n';
    assert.deepEqual(parseCpuTimes(stat), { total: 3277324 + 63859 + 633493 + 12848238 + 41967 + 0 + 98533 + 42323, idle: 12848238 + 41967, steal: 42323 });
    assert.equal(parseCpuTimes('cpu0 1 2 3 4 5 6 7 8\n'), undefined, 'a single CPU is not the machine');
    assert.equal(parseCpuTimes('cpu  1 2 3\n'), undefined, 'too few fields');
    assert.equal(parseCpuTimes('cpu  1 2 x 4 5 6 7 8\n'), undefined);
    assert.equal(parseCpuTimes(''), undefined);
  });

  it('gives steal and busy as shares of the CPU time between two readings', () => {
    const a = { total: 1000, idle: 600, steal: 10 };
    assert.deepEqual(cpuShares(a, { total: 2000, idle: 1100, steal: 60 }), { stealPercent: 5, busyPercent: 50 });
    assert.equal(cpuShares(a, a), undefined, 'no time between them');
    assert.equal(cpuShares(undefined, a), undefined);
  });

  it('reads this machine and times the probe', function () {
    this.timeout(60_000);
    const a = cpuTimes();
    assert.ok(a && a.total > 0 && a.idle <= a.total && a.steal <= a.total, JSON.stringify(a));
    const ms = speedProbeMs();
    assert.ok(ms.cpu > 0 && Number.isFinite(ms.cpu) && ms.memory > 0 && Number.isFinite(ms.memory), JSON.stringify(ms));
    const b = cpuTimes()!;
    assert.ok(b.total >= a.total, 'the counters only grow');
  });
});
