/**
 * tether sync and pull (issue 13), the pure parts: what sync does after the plan (apply, nothing
 * to change, plan failed, ask), the plan's text with pruned resources (pruning is drift), the
 * tether.yaml a pull writes and --file reads (checked, bounded, another instance's folder never
 * overwritten).
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InstanceView } from '../../control-plane/bundles/bundles.wire.ts';
import { renderPlan } from '../../control-plane/cli/diff.commands.ts';
import { decide } from '../../control-plane/cli/sync.commands.ts';
import { readStateFile, stateBody, stateDirName, stateFileOf, writeStateFile } from '../../control-plane/cli/pull.commands.ts';
import { removeDir, tempDir } from '../support/control-plane.ts';

const inSyncJob = { state: 'succeeded' as const, error: null, outputs: { steps: [{ name: 'policy', state: 'succeeded', outputs: { resources: [{ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'web-ab12c', name: 'a', status: 'in-sync' }] } }] } };
const view = (osid: string, cluster: string) =>
  ({
    osid,
    cluster,
    bundle: { source: 'webapp', name: 'webapp', version: '1.0.0', url: 'https://git.example/stacks.git', path: 'webapp', commit: 'c'.repeat(40) },
    inputs: { replicas: 2, image: 'nginx:1', tls: false, note: null },
    version: 3,
  }) as unknown as InstanceView;

describe('bundles: tether sync and pull (plan, decisions, state file)', () => {
  it('decides from the plan: nothing to change or a failed plan applies nothing unless --force; otherwise ask, or apply with --yes', () => {
    assert.deepEqual(decide(0, {}), { kind: 'nothing' });
    assert.deepEqual(decide(0, { yes: true }), { kind: 'nothing' });
    assert.deepEqual(decide(0, { force: true }), { kind: 'ask' });
    assert.deepEqual(decide(0, { force: true, yes: true }), { kind: 'apply' });
    assert.deepEqual(decide(1, { yes: true }), { kind: 'plan-failed' });
    assert.deepEqual(decide(1, { yes: true, force: true }), { kind: 'apply' });
    assert.deepEqual(decide(2, {}), { kind: 'ask' });
    assert.deepEqual(decide(2, { yes: true }), { kind: 'apply' });
  });

  it('shows the resources that would be removed, in order, before the diff; pruning alone is drift (2)', () => {
    assert.deepEqual(renderPlan(inSyncJob, []), { text: 'in sync\n', exitCode: 0 });
    const r = renderPlan(inSyncJob, [
      { name: 'cache', type: 'helm', action: 'helm uninstall' },
      { name: 'db', type: 'tofu', action: 'tofu destroy' },
    ]);
    assert.equal(r.exitCode, 2);
    assert.equal(
      r.text,
      '=== cache: helm resource no longer in the desired state: would be removed (helm uninstall)\n=== db: tofu resource no longer in the desired state: would be removed (tofu destroy)\n',
    );
    // An object of a manifest resource that would be pruned.
    const pruneJob = { ...inSyncJob, outputs: { steps: [{ name: 'policy', state: 'succeeded', outputs: { resources: [{ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'web-ab12c', name: 'old', status: 'prune' }] } }] } };
    const p = renderPlan(pruneJob, []);
    assert.equal(p.exitCode, 2);
    assert.match(p.text, /^=== policy: v1 ConfigMap web-ab12c\/old: prune \(no longer in the desired state: would be deleted\)$/m);
    // A failed diff stays a failure.
    assert.equal(renderPlan({ state: 'failed', error: { code: 'x', message: 'y', retryable: false }, outputs: null }, [{ name: 'db', type: 'tofu', action: 'tofu destroy' }]).exitCode, 1);
  });

  it('pull writes tether.<cid>.<osid>/tether.yaml that --file reads back; it never overwrites another instance', () => {
    const dir = tempDir('tether-pull-unit-');
    try {
      const v = view('web-ab12c', 'prod1');
      const folder = join(dir, stateDirName('prod1', 'web-ab12c'));
      assert.equal(stateDirName('prod1', 'web-ab12c'), 'tether.prod1.web-ab12c');
      assert.deepEqual(writeStateFile(folder, stateFileOf(v, { ref: 'main' } as never)), { replaced: false });
      const text = readFileSync(join(folder, 'tether.yaml'), 'utf8');
      assert.match(text, /^instance: web-ab12c$/m);
      assert.match(text, /^ {2}ref: main$/m);
      const state = readStateFile(folder);
      assert.equal(state.bundle.commit, 'c'.repeat(40));
      assert.deepEqual(stateBody(state), { commit: 'c'.repeat(40), inputs: { replicas: 2, image: 'nginx:1', tls: false } }, 'a null input is left to its default');
      assert.deepEqual(writeStateFile(folder, stateFileOf(v, undefined)), { replaced: true }, 'the same instance: updated');
      assert.throws(() => writeStateFile(folder, stateFileOf(view('web-zz999', 'prod1'), undefined)), /holds the state of instance web-ab12c in cluster prod1, not web-zz999 in prod1: not overwritten/);
      assert.equal(readStateFile(folder).instance, 'web-ab12c', 'left as it was');
      // Not a state file: refused, not overwritten.
      const other = join(dir, 'other');
      mkdirSync(other);
      writeFileSync(join(other, 'tether.yaml'), 'hello: world\n');
      assert.throws(() => writeStateFile(other, stateFileOf(v, undefined)), /not an instance state/);
      assert.equal(readFileSync(join(other, 'tether.yaml'), 'utf8'), 'hello: world\n');
    } finally {
      removeDir(dir);
    }
  });

  it('--file refuses a malformed or oversized state file, naming the problem', () => {
    const dir = tempDir('tether-pull-unit-');
    try {
      assert.throws(() => readStateFile(dir), /cannot read .*tether\.yaml: ENOENT/);
      writeFileSync(join(dir, 'tether.yaml'), 'apiVersion: tether.dev/v1\nkind: InstanceState\ninstance: web-ab12c\ncluster: prod1\nbundle: {source: webapp, commit: main}\ninputs: {replicas: [1]}\n');
      assert.throws(() => readStateFile(dir), /bundle\.commit: must be a full commit SHA.*inputs\.replicas/);
      writeFileSync(join(dir, 'tether.yaml'), `# ${'x'.repeat(1024 * 1024)}\n`);
      assert.throws(() => readStateFile(dir), /larger than 1024 KiB/);
      writeFileSync(join(dir, 'tether.yaml'), 'a: [\n');
      assert.throws(() => readStateFile(dir), /not YAML/);
    } finally {
      removeDir(dir);
    }
  });
});
