/** The tofu diff as a pure plan: plan arguments, exit codes, and the plan JSON read down to addresses and actions. */
import assert from 'node:assert/strict';
import { diffSpecSchema } from '../../common/specs.ts';
import { planDiff, planExit, tofuPlanArgs, tofuShowPlanArgs } from '../../cluster-agent/tofu/diff.plan.ts';

const SECRET = 's3cr3t-value-never-shown';

describe('tofu diff plan', () => {
  it('plans with refresh, no lock, a saved plan and the detailed exit code; never apply', () => {
    const args = tofuPlanArgs('/run/secret/diff.tfplan', '/run/secret/vars.tfvars.json');
    assert.equal(args[0], 'plan');
    for (const a of ['-detailed-exitcode', '-lock=false', '-input=false', '-out=/run/secret/diff.tfplan', '-var-file=/run/secret/vars.tfvars.json']) assert.ok(args.includes(a), a);
    assert.ok(!args.some((a) => a.startsWith('-refresh')), 'refresh stays on');
    assert.ok(!tofuPlanArgs('/p').some((a) => a.startsWith('-var-file')));
    assert.deepEqual(tofuShowPlanArgs('/p'), ['show', '-json', '-no-color', '/p']);
  });

  it('reads the detailed exit code: 0 in sync, 2 drifted, anything else an error', () => {
    assert.equal(planExit(0), 'in-sync');
    assert.equal(planExit(2), 'drifted');
    assert.equal(planExit(1), 'error');
    assert.equal(planExit(null), 'error');
    assert.equal(planExit(undefined), 'error');
  });

  it('names each managed resource by address and action, drift outside tofu flagged, never a value', () => {
    const plan = {
      resource_drift: [{ address: 'random_pet.a', mode: 'managed', change: { actions: ['update'] } }, { address: 'kubernetes_config_map.app', mode: 'managed', change: { actions: ['update'], before: { data: { greeting: SECRET } }, after: { data: { greeting: 'x' } } } }],
      resource_changes: [
        { address: 'kubernetes_config_map.app', mode: 'managed', change: { actions: ['update'], before: { data: { greeting: 'x' } }, after: { data: { greeting: SECRET } }, after_sensitive: { data: true } } },
        { address: 'random_pet.a', mode: 'managed', change: { actions: ['no-op'] } },
        { address: 'module.m.random_password.p[0]', mode: 'managed', change: { actions: ['delete', 'create'] } },
        { address: 'kubernetes_namespace.n', mode: 'managed', change: { actions: ['create'] } },
        { address: 'data.kubernetes_namespace.d', mode: 'data', change: { actions: ['read'] } },
        { address: 'x.evil', mode: 'managed', change: { actions: ['update', SECRET] } },
      ],
      output_changes: { uid: { actions: ['no-op'] }, greeting: { actions: ['update'], after: SECRET } },
    };
    const d = planDiff(JSON.stringify(plan));
    assert.deepEqual(d.resources, [
      { address: 'kubernetes_config_map.app', status: 'drifted', diff: 'update', changedOutside: true },
      { address: 'kubernetes_namespace.n', status: 'missing', diff: 'create' },
      { address: 'module.m.random_password.p[0]', status: 'drifted', diff: 'delete, create' },
      { address: 'output.greeting', status: 'drifted', diff: 'update' },
      { address: 'random_pet.a', status: 'in-sync' },
      { address: 'x.evil', status: 'drifted', diff: 'update' },
    ]);
    assert.deepEqual(d.summary, { inSync: 1, drifted: 4, missing: 1, error: 0 });
    assert.ok(!JSON.stringify(d).includes(SECRET));
  });

  it('an unchanged plan is in sync; JSON that is not a plan is an error', () => {
    const d = planDiff(JSON.stringify({ resource_changes: [{ address: 'a.b', mode: 'managed', change: { actions: ['no-op'] } }] }));
    assert.deepEqual(d.summary, { inSync: 1, drifted: 0, missing: 0, error: 0 });
    assert.deepEqual(planDiff('{}').resources, []);
    assert.throws(() => planDiff('not json'), /did not print JSON/);
    assert.throws(() => planDiff('[]'), /did not print an object/);
  });

  it('the diff spec takes a tofu target without action', () => {
    const spec = { source: { git: { url: 'https://example.com/m.git', ref: 'main' } }, stateName: 'app' };
    assert.ok(diffSpecSchema.safeParse({ target: 'tofu', spec }).success);
    assert.ok(!diffSpecSchema.safeParse({ target: 'tofu', spec: { ...spec, action: 'delete' } }).success);
    assert.ok(!diffSpecSchema.safeParse({ target: 'tofu', spec: { ...spec, stateName: 'Bad Name' } }).success);
  });
});
