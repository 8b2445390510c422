/**
 * Read-only git access for bundles: one bare mirror per URL (fetched, never pushed) under a cache
 * folder, a ref resolved to the commit it names now, and an immutable plain tree per commit
 * (no .git) that validation reads. Git runs through simple-git with an allow-listed environment;
 * operations on one URL are serialized.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { simpleGit, type SimpleGit } from 'simple-git';
import { TetherError, errorMessage } from '../../common/errors.ts';

const FULL_SHA_RE = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

function gitEnv(): Record<string, string> {
  const env: Record<string, string> = { GIT_TERMINAL_PROMPT: '0', GIT_LFS_SKIP_SMUDGE: '1', GIT_CONFIG_NOSYSTEM: '1' };
  for (const k of ['PATH', 'HOME', 'LANG', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'SSH_AUTH_SOCK', 'HTTPS_PROXY', 'HTTP_PROXY', 'NO_PROXY']) {
    const v = process.env[k];
    if (v !== undefined) env[k] = v;
  }
  return env;
}

function git(baseDir: string): SimpleGit {
  return simpleGit({
    baseDir,
    maxConcurrentProcesses: 2,
    timeout: { block: 120_000 },
    allowEnvironment: ['GIT_TERMINAL_PROMPT', 'GIT_LFS_SKIP_SMUDGE', 'GIT_CONFIG_NOSYSTEM'],
  }).env(gitEnv());
}

/** A URL without its userinfo (credentials never reach a message). */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)[^@/]*@/i, '$1');
}

function firstLine(s: string): string {
  return s.split('\n').find((l) => l.trim() !== '' && !l.startsWith('hint:'))?.trim().slice(0, 400) ?? s;
}

export class GitCache {
  private readonly dir: string;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(join(dir, 'repos'), { recursive: true, mode: 0o700 });
    mkdirSync(join(dir, 'trees'), { recursive: true, mode: 0o700 });
  }

  private key(url: string): string {
    return createHash('sha256').update(url).digest('hex').slice(0, 24);
  }

  private serialized<T>(url: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(url) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.locks.set(url, next.catch(() => undefined));
    return next;
  }

  /** Fetches the URL's branches and tags and returns the full commit SHA `ref` names now. */
  async resolve(url: string, ref: string): Promise<string> {
    return this.serialized(url, async () => {
      const bare = join(this.dir, 'repos', `${this.key(url)}.git`);
      try {
        if (!existsSync(bare)) {
          const tmp = mkdtempSync(join(this.dir, 'repos', 'tmp-'));
          await git(tmp).init(true).addRemote('origin', url);
          renameSync(tmp, bare);
        }
        const b = git(bare);
        await b.raw(['fetch', '--prune', '--force', '--quiet', 'origin', '+refs/heads/*:refs/heads/*', '+refs/tags/*:refs/tags/*']);
        if (FULL_SHA_RE.test(ref)) {
          const known = await b.raw(['cat-file', '-t', ref]).catch(() => '');
          // A commit no branch or tag reaches: ask for it by id.
          if (known.trim() !== 'commit') await b.raw(['fetch', '--quiet', 'origin', ref]);
        }
        return (await b.raw(['rev-parse', '--verify', '--quiet', '--end-of-options', `${ref}^{commit}`])).trim();
      } catch (err) {
        throw new TetherError('bundle_source_unavailable', `cannot resolve ${redactUrl(url)}@${ref}: ${firstLine(errorMessage(err))}`, { status: 422, cause: err });
      }
    });
  }

  /** A plain tree of the commit (checked out once, then reused); the commit must have been resolved. */
  async tree(url: string, commit: string): Promise<string> {
    if (!FULL_SHA_RE.test(commit)) throw new TetherError('invalid_commit', `not a full commit SHA: ${commit}`, { status: 400 });
    const target = join(this.dir, 'trees', commit);
    if (existsSync(target)) return target;
    return this.serialized(url, async () => {
      if (existsSync(target)) return target;
      const bare = join(this.dir, 'repos', `${this.key(url)}.git`);
      const tmp = mkdtempSync(join(this.dir, 'trees', 'tmp-'));
      try {
        await git(this.dir).raw(['clone', '--quiet', '--no-checkout', '--shared', '--', bare, tmp]);
        await git(tmp).raw(['-c', 'advice.detachedHead=false', 'checkout', '--quiet', '--detach', commit]);
        rmSync(join(tmp, '.git'), { recursive: true, force: true });
        renameSync(tmp, target);
      } catch (err) {
        rmSync(tmp, { recursive: true, force: true });
        throw new TetherError('bundle_source_unavailable', `cannot check out ${commit} of ${redactUrl(url)}: ${firstLine(errorMessage(err))}`, { status: 422, cause: err });
      }
      return target;
    });
  }
}
