import { strict as assert } from 'node:assert';
import { REPLICAS_DEFAULTS, cpuMsPer, parseReplicasOption, replicaOfAgent, replicaOfSubmission, spreadAgents, treeCpuDelta } from '../../bench/lib/replicas.plan.ts';

describe('bench replicas: the pure parts', () => {
  it('spreads agents over the replicas in contiguous slices, every agent once, sizes differing by at most one', () => {
    assert.deepEqual(spreadAgents(500, 1), [{ replica: 0, from: 0, to: 500 }]);
    assert.deepEqual(spreadAgents(500, 2), [{ replica: 0, from: 0, to: 250 }, { replica: 1, from: 250, to: 500 }]);
    assert.deepEqual(spreadAgents(7, 3), [{ replica: 0, from: 0, to: 3 }, { replica: 1, from: 3, to: 5 }, { replica: 2, from: 5, to: 7 }]);
    for (const [n, r] of [[1, 2], [2, 2], [999, 2], [1000, 3], [10, 4]] as const) {
      const s = spreadAgents(n, r);
      assert.equal(s.length, r);
      assert.equal(s[0]!.from, 0);
      assert.equal(s.at(-1)!.to, n);
      for (let i = 1; i < s.length; i++) assert.equal(s[i]!.from, s[i - 1]!.to);
      const sizes = s.map((x) => x.to - x.from);
      assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, JSON.stringify(sizes));
    }
  });

  it('knows which replica holds an agent, and alternates submissions', () => {
    assert.equal(replicaOfAgent(0, 500, 2), 0);
    assert.equal(replicaOfAgent(249, 500, 2), 0);
    assert.equal(replicaOfAgent(250, 500, 2), 1);
    assert.equal(replicaOfAgent(499, 500, 2), 1);
    assert.throws(() => replicaOfAgent(500, 500, 2));
    assert.deepEqual([0, 1, 2, 3, 4].map((k) => replicaOfSubmission(k, 2)), [0, 1, 0, 1, 0]);
    assert.deepEqual([0, 1, 2].map((k) => replicaOfSubmission(k, 1)), [0, 0, 0]);
  });

  it('CPU per operation sums over processes; none measured is NaN, not zero', () => {
    assert.equal(cpuMsPer([120, 80], 1000), 0.2);
    assert.equal(cpuMsPer([1], 3), 0.333);
    assert.ok(Number.isNaN(cpuMsPer([100], 0)));
  });

  it('a process tree\'s CPU: new processes count whole, ended ones through the root\'s reaped time', () => {
    // Root 1 (own + reaped), children 2 (lives on) and 3 (ends; its 50 ms total moves to the root's reaped time), 4 (new).
    const before = new Map([[1, 100], [2, 10], [3, 20]]);
    const after = new Map([[1, 100 + 50], [2, 25], [4, 7]]);
    // root +50 (child 3's whole time) - child 3's 20 before = its 30 in the window; child 2 +15; child 4 +7.
    assert.equal(treeCpuDelta(before, after), 30 + 15 + 7);
    assert.equal(treeCpuDelta(new Map(), new Map()), 0);
  });

  it('parses --replicas key=value pairs and refuses anything else', () => {
    assert.deepEqual(parseReplicasOption(undefined), REPLICAS_DEFAULTS);
    const c = parseReplicasOption('agents=2000, commands=20000,dispatch=1000,window=60,pg-durable=off,setups=pg2+pg1');
    assert.deepEqual(c, { agents: 2000, commands: 20000, dispatch: 1000, window: 60, pgDurable: false, setups: ['pg1', 'pg2'] });
    for (const bad of ['agents=0', 'agents=1.5', 'agents', 'agents=5=6', 'pg-durable=maybe', 'setups=pg3', 'colour=blue', 'window=2']) assert.throws(() => parseReplicasOption(bad), /--replicas/, bad);
    assert.equal(REPLICAS_DEFAULTS.pgDurable, true);
  });
});
