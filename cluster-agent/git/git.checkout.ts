/**
 * Checks a git source out at a pinned ref into a fresh folder: a shallow fetch of the ref
 * (branch, tag or full commit SHA), falling back to a full fetch for abbreviated SHAs or servers
 * that refuse to serve a commit by id. The sub-path is then resolved inside the checkout.
 */
import { mkdirSync } from 'node:fs';
import { simpleGit, type SimpleGit } from 'simple-git';
import { CommandFailure, errorMessage } from '../../common/errors.ts';
import type { GitSource } from '../../common/specs.ts';
import { gitFailureCode } from './git.plan.ts';
import { resolveInside } from './paths.ts';
import { baseEnv } from '../process/run.ts';

export interface Checkout {
  /** Root of the working tree. */
  root: string;
  /** Real path of `source.path` inside it. */
  dir: string;
  commit: string;
}

const SHA_RE = /^[0-9a-f]{7,64}$/i;

export async function checkoutGit(source: GitSource, into: string, opts: { signal: AbortSignal; emit?: (line: string) => void }): Promise<Checkout> {
  mkdirSync(into, { recursive: true, mode: 0o700 });
  // The same allow-listed environment as helm and tofu: never the agent's own variables.
  const git: SimpleGit = simpleGit({
    baseDir: into,
    abort: opts.signal,
    maxConcurrentProcesses: 1,
    allowEnvironment: ['GIT_TERMINAL_PROMPT', 'GIT_LFS_SKIP_SMUDGE'],
  }).env({
    ...baseEnv(),
    GIT_TERMINAL_PROMPT: '0',
    GIT_LFS_SKIP_SMUDGE: '1',
  });
  const where = `${redactUrl(source.url)}@${source.ref}`;
  opts.emit?.(`fetching ${where}`);
  try {
    await git.init();
    await git.addRemote('origin', source.url);
    try {
      await git.raw(['fetch', '--depth=1', '--no-tags', 'origin', source.ref]);
      await git.raw(['-c', 'advice.detachedHead=false', 'checkout', '--quiet', '--detach', 'FETCH_HEAD']);
    } catch (shallowErr) {
      if (!SHA_RE.test(source.ref)) throw shallowErr;
      // An abbreviated SHA (or a server without allow-reachable-sha1-in-want): fetch everything.
      await git.raw(['fetch', '--tags', 'origin', '+refs/heads/*:refs/remotes/origin/*']);
      await git.raw(['-c', 'advice.detachedHead=false', 'checkout', '--quiet', '--detach', `${source.ref}^{commit}`]);
    }
  } catch (err) {
    if (opts.signal.aborted) throw err;
    const message = errorMessage(err);
    throw new CommandFailure(gitFailureCode(message), `cannot check out ${where}: ${firstLine(message)}`, { cause: err });
  }
  const commit = (await git.revparse(['HEAD'])).trim();
  opts.emit?.(`checked out ${where} at ${commit}`);
  return { root: into, dir: resolveInside(into, source.path), commit };
}

/** A URL without its userinfo (credentials never reach a log). */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)[^@/]*@/i, '$1');
}

function firstLine(s: string): string {
  return s.split('\n').find((l) => l.trim() !== '')?.trim().slice(0, 500) ?? s;
}
