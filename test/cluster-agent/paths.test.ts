/** Sub-paths of a checkout stay inside it: no "..", no absolute paths, no symlink escapes. */
import assert from 'node:assert/strict';
import { mkdirSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isInside, resolveInside } from '../../cluster-agent/git/paths.ts';
import { TetherError } from '../../common/errors.ts';
import { removeDir, tempDir } from '../support/control-plane.ts';

describe('path containment', () => {
  let root: string;
  let outside: string;
  before(() => {
    const base = tempDir('tether-paths-');
    root = join(base, 'repo');
    outside = join(base, 'outside');
    mkdirSync(join(root, 'charts', 'app'), { recursive: true });
    mkdirSync(outside);
    writeFileSync(join(root, 'file.txt'), 'x');
    symlinkSync(outside, join(root, 'escape'));
    symlinkSync('/etc', join(root, 'etc'));
    symlinkSync(join(root, 'charts'), join(root, 'inner-link'));
  });
  after(() => removeDir(join(root, '..')));

  const refused = (sub: string, code = 'invalid_path') =>
    assert.throws(() => resolveInside(root, sub), (e: unknown) => e instanceof TetherError && e.code === code, sub);

  it('resolves folders inside the checkout', () => {
    const real = realpathSync(root);
    assert.equal(resolveInside(root, '.'), real);
    assert.equal(resolveInside(root, 'charts/app'), join(real, 'charts', 'app'));
    assert.equal(resolveInside(root, 'charts/app/../app'), join(real, 'charts', 'app'));
    assert.equal(resolveInside(root, 'inner-link/app'), join(real, 'charts', 'app'));
  });

  it('refuses .., absolute paths and symbolic links that lead outside', () => {
    refused('..');
    refused('charts/../../outside');
    refused('/etc');
    refused('escape');
    refused('etc');
  });

  it('refuses missing paths and files where a folder is needed', () => {
    refused('nope', 'path_not_found');
    refused('file.txt');
    assert.ok(resolveInside(root, 'file.txt', 'any').endsWith('file.txt'));
  });

  it('isInside is purely lexical on resolved paths', () => {
    assert.ok(isInside('/a/b', '/a/b'));
    assert.ok(isInside('/a/b', '/a/b/c'));
    assert.ok(isInside('/a/b', '/a/b/..c'));
    assert.ok(!isInside('/a/b', '/a/bc'));
    assert.ok(!isInside('/a/b', '/a'));
  });
});
