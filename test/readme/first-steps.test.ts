/**
 * The README's "First steps" block, pasted as one piece into a shell in a fresh clone (issue 17):
 * `npm start &` and the next `npx tether` run their set-up at once (the lock makes the second
 * wait), `tether wait` waits for the control plane, a node agent registers and runs, and the job
 * ends succeeded. Nothing in the block is changed; around it only what a newcomer's machine has:
 *  - a clone of this repository with the working tree's changes applied (so the test checks what
 *    is about to be committed), without node_modules or dist: the set-up runs `npm ci` from npm's
 *    cache (offline: this network namespace has no network) and builds the bundles;
 *  - the system's Node and npm first on PATH (not the project's Node 24), so npm's engine check
 *    sees what a newcomer's does;
 *  - a network namespace of its own with only loopback, so the README's port 8443 is free.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { REPO_ROOT, removeDir, tempDir } from '../support/control-plane.ts';

/** The fenced block after the first-steps marker. */
export function firstStepsBlock(readme: string): string {
  const at = readme.indexOf('<!-- first-steps');
  assert.ok(at >= 0, 'README.md has a <!-- first-steps --> marker');
  const m = /```sh\n([\s\S]*?)\n```/.exec(readme.slice(at));
  assert.ok(m, 'a ```sh block follows the marker');
  return `${m[1]!}\n`;
}

/** `git clone` of the repository plus the working tree's uncommitted and untracked files. */
function freshClone(dir: string): void {
  execFileSync('git', ['clone', '--quiet', REPO_ROOT, dir]);
  const diff = execFileSync('git', ['-C', REPO_ROOT, 'diff', 'HEAD', '--binary'], { maxBuffer: 64 << 20 });
  if (diff.length > 0) execFileSync('git', ['-C', dir, 'apply', '--whitespace=nowarn'], { input: diff });
  const untracked = execFileSync('git', ['-C', REPO_ROOT, 'ls-files', '--others', '--exclude-standard', '-z']).toString().split('\0').filter(Boolean);
  for (const f of untracked) {
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    copyFileSync(join(REPO_ROOT, f), join(dir, f));
  }
}

describe('README: the first steps, pasted into a fresh clone', function () {
  this.timeout(15 * 60_000);
  let dir: string;
  after(() => {
    if (dir) removeDir(dir);
  });

  it('reach a succeeded job with a node agent and no Kubernetes', async () => {
    const block = firstStepsBlock(readFileSync(join(REPO_ROOT, 'README.md'), 'utf8'));
    dir = tempDir('tether-readme-');
    const clone = join(dir, 'tether');
    freshClone(clone);
    assert.ok(!existsSync(join(clone, 'node_modules')), 'the clone starts without node_modules');

    // The system's node/npm/npx, not the project's Node 24 nor its node_modules/.bin.
    const nodeDir = process.env.TETHER_NODE_DIR;
    const path = (process.env.PATH ?? '').split(delimiter).filter((p) => p && !(nodeDir && p.startsWith(nodeDir)) && !p.includes('node_modules')).join(delimiter);
    const env: NodeJS.ProcessEnv = {
      PATH: path,
      HOME: process.env.HOME,
      ...(process.env.TETHER_CACHE ? { TETHER_CACHE: process.env.TETHER_CACHE } : {}),
      npm_config_offline: 'true',
      npm_config_update_notifier: 'false',
      npm_config_fund: 'false',
      npm_config_audit: 'false',
    };
    // Root makes the namespace directly; anyone else through a user namespace mapped to root.
    const unshare = process.getuid?.() === 0 ? ['--net'] : ['--net', '--map-root-user'];
    const shell = spawn('unshare', [...unshare, 'bash', '-c', 'ip link set lo up && exec bash -c "$0"', block], { cwd: clone, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    shell.stdout.on('data', (d) => (output += d));
    shell.stderr.on('data', (d) => (output += d));
    const closed = new Promise<void>((resolve) => shell.once('close', () => resolve()));
    let code: number | null;
    try {
      // 'exit', not 'close': the background processes hold the output pipes open.
      code = await new Promise<number | null>((resolve) => shell.once('exit', (c) => resolve(c)));
    } finally {
      // The block leaves the control plane and the node agent running in the background (same
      // process group, as no job control is on in a pasted, non-interactive shell).
      try {
        process.kill(-shell.pid!, 'SIGTERM');
      } catch {
        /* already gone */
      }
      await Promise.race([closed, new Promise((r) => setTimeout(r, 10_000))]); // the rest of the output
    }
    assert.equal(code, 0, `the block ended with ${code}:\n${output}`);
    assert.match(output, /tether: job \d+ succeeded/, output);
    assert.match(output, /install plan \(root \/; host commands not executed: dry-run\)/, 'the job log is streamed');
    assert.match(output, /setup: waiting for another set-up of this checkout to finish/, 'the second set-up waited for the first');
    assert.doesNotMatch(output, /EBADENGINE|Unsupported engine/, 'no npm engine warnings');
    assert.doesNotMatch(output, /binding\.gyp|no API token|tether: aborted/, output);
  });
});
