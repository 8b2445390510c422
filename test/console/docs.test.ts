/**
 * docs/console.md and its screenshots: every screenshot link resolves to a committed file, and
 * every committed screenshot is linked (a page renamed in the tests leaves no orphan or dead link).
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../support/control-plane.ts';

describe('docs/console.md screenshots', () => {
  const doc = readFileSync(join(REPO_ROOT, 'docs', 'console.md'), 'utf8');
  const links = [...doc.matchAll(/\]\((console\/[^)\s]+\.png)\)/g)].map((m) => m[1]!);

  it('links only screenshots that exist', () => {
    assert.ok(links.length > 0, 'docs/console.md links screenshots');
    assert.deepEqual(links.filter((l) => !existsSync(join(REPO_ROOT, 'docs', l))), []);
  });

  it('links every committed screenshot', () => {
    const files = readdirSync(join(REPO_ROOT, 'docs', 'console')).filter((f) => f.endsWith('.png'));
    assert.ok(files.length > 0);
    assert.deepEqual(files.filter((f) => !links.includes(`console/${f}`)), []);
  });
});
