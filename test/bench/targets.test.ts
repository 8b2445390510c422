import { strict as assert } from 'node:assert';
import { Targets, compare } from '../../bench/lib/targets.ts';

describe('bench targets', () => {
  it('derives met from the value, the comparison and the bound', () => {
    assert.equal(compare(10, '<=', 10), true);
    assert.equal(compare(10.01, '<=', 10), false);
    assert.equal(compare(250, '<', 250), false);
    assert.equal(compare(2000, '>=', 2000), true);
    assert.equal(compare(1999, '>=', 2000), false);
    assert.equal(compare(0, '==', 0), true);
    assert.equal(compare(1, '==', 0), false);
  });

  it('an unmeasured value (NaN) is never met, not even against a bound it cannot compare to', () => {
    assert.equal(compare(NaN, '<=', 15), false);
    assert.equal(compare(NaN, '>=', 0), false);
    assert.equal(compare(Infinity, '>=', 0), false);
  });

  it('a figure measured under other conditions than the target is not met and says why', () => {
    const t = new Targets();
    const a = t.add({ name: 'submit → claim p99, 10,000 agents held', value: 4, unit: 'ms', comparison: '<=', target: 10, conditionsMet: false, note: 'measured with 1000 agents' });
    const b = t.add({ name: 'commands end to end', value: 2100, unit: 'commands/s', comparison: '>=', target: 2000 });
    assert.equal(a.met, false);
    assert.equal(a.note, 'measured with 1000 agents');
    assert.equal(b.met, true);
    assert.equal('note' in b, false);
    assert.deepEqual(t.list, [a, b]);
    const printed = t.render();
    assert.match(printed, /^targets: 1 of 2 met/);
    assert.match(printed, /submit → claim p99, 10,000 agents held\s+\| 4 ms\s+\| <= 10 ms\s+\| NO {2}\(measured with 1000 agents\)/);
    assert.match(printed, /commands end to end\s+\| 2,100 commands\/s\s+\| >= 2,000 commands\/s\s+\| yes/);
  });

  it('prints nothing when the run measured no target', () => {
    assert.equal(new Targets().render(), '');
  });
});
