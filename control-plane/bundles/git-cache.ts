/**
 * Read-only git access for bundles, per account: one bare mirror per (account, URL), fetched
 * under the fetch policy (fetch-policy.plan.ts), never pushed; a ref resolved to the commit it
 * names now; an immutable plain tree per commit (no .git) that validation reads. One account's
 * mirrors and trees are never another's. git runs with an environment of its own (no HOME, no
 * agent socket, no configuration of the server's user), the source's own credentials only, and a
 * timeout. Operations on one mirror are serialized. What was refused and why goes to the log;
 * the tenant sees one message for every refusal (a closed port and a missing repository look
 * alike). Mirrors of sources no longer registered, and anything unused for long, are collected.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { TetherError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { checkSource } from './fetch-policy.ts';
import { fetchConfig, gitEnvironment, localConfig, type FetchPolicy, type FetchRefusal, type GitCredentials } from './fetch-policy.plan.ts';

const FULL_SHA_RE = /^[0-9a-f]{40}([0-9a-f]{24})?$/;
const OUTPUT_CAP = 64 * 1024;

export interface GitCacheOptions {
  policy: FetchPolicy;
  /** 'isolated' (the server): git's environment is its own. 'user' (the CLI): its user's own. */
  environment: 'isolated' | 'user';
  timeoutMs: number;
  log?: Logger;
  /** The CLI shows its own user why; the server tells a tenant only that it could not fetch. */
  detailInErrors?: boolean;
  /** Fetches running at once, over all accounts (default 4); more wait their turn. */
  maxConcurrentFetches?: number;
}

export interface FetchSource {
  url: string;
  ref: string;
  credentials?: GitCredentials;
}

/** A URL without its userinfo (credentials never reach a message). */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)[^@/]*@/i, '$1');
}

/** The one answer a tenant gets for any source that could not be fetched, whatever the reason. */
export function sourceUnavailable(url: string, ref: string, detail?: string): TetherError {
  const why = detail ?? 'it is unreachable, not allowed by this server\'s fetch policy, refuses the credentials, or has no such ref';
  return new TetherError('bundle_source_unavailable', `cannot fetch ${redactUrl(url)} at ${ref}: ${why}`, { status: 422 });
}

class Refused extends Error {
  readonly reason: FetchRefusal;
  constructor(reason: FetchRefusal, detail: string) {
    super(detail);
    this.reason = reason;
  }
}

interface GitResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function runGit(args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<GitResult> {
  return new Promise((resolve) => {
    // A process group of its own: git's helpers (git-remote-https, ssh, upload-pack) hold the pipes
    // too, and a timeout must end them all.
    const child = spawn('git', args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => {
      if (stdout.length < OUTPUT_CAP) stdout += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < OUTPUT_CAP) stderr += d.toString('utf8');
    });
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: `${stderr}${err.message}`, timedOut });
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

function firstLine(s: string): string {
  return s.split('\n').find((l) => l.trim() !== '' && !l.startsWith('hint:'))?.trim().slice(0, 400) ?? '';
}

const hash = (s: string, n: number) => createHash('sha256').update(s).digest('hex').slice(0, n);

export class GitCache {
  private readonly dir: string;
  private readonly o: GitCacheOptions;
  private readonly locks = new Map<string, Promise<unknown>>();
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(dir: string, o: GitCacheOptions) {
    this.dir = dir;
    this.o = o;
    mkdirSync(join(dir, 'accounts'), { recursive: true, mode: 0o700 });
  }

  private accountDir(account: string): string {
    return join(this.dir, 'accounts', hash(account, 16));
  }

  private mirror(account: string, url: string): string {
    return join(this.accountDir(account), 'repos', `${hash(url, 24)}.git`);
  }

  private serialized<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.locks.set(key, settled);
    void settled.then(() => {
      if (this.locks.get(key) === settled) this.locks.delete(key);
    });
    return next;
  }

  /** At most maxConcurrentFetches fetches at once: one tenant's many sources cannot fork git without bound. */
  private async limited<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= (this.o.maxConcurrentFetches ?? 4)) await new Promise<void>((r) => this.waiting.push(r));
    else this.running++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }

  private env(config: [string, string][]): NodeJS.ProcessEnv {
    if (this.o.environment === 'user') return { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_LFS_SKIP_SMUDGE: '1' };
    return gitEnvironment({ PATH: process.env.PATH, SSL_CERT_FILE: process.env.SSL_CERT_FILE, SSL_CERT_DIR: process.env.SSL_CERT_DIR }, config);
  }

  private async git(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<string> {
    const r = await runGit(args, cwd, env, this.o.timeoutMs);
    if (r.timedOut) throw new Refused('timeout', `git ${args[0]} timed out after ${this.o.timeoutMs} ms`);
    if (r.code !== 0) throw new Refused('git', `git ${args[0]} exited ${r.code}: ${firstLine(r.stderr) || '(no message)'}`);
    return r.stdout;
  }

  private refuse(account: string, src: FetchSource, err: unknown): TetherError {
    const reason: FetchRefusal = err instanceof Refused ? err.reason : 'git';
    const detail = err instanceof Error ? err.message : String(err);
    this.o.log?.warn({ account, url: redactUrl(src.url), ref: src.ref, reason, detail }, 'bundle source not fetched');
    return sourceUnavailable(src.url, src.ref, this.o.detailInErrors ? `${reason}: ${detail}` : undefined);
  }

  /** Fetches the source's branches and tags (policy first) and returns the full commit SHA `ref` names now. */
  async resolve(account: string, src: FetchSource): Promise<string> {
    const bare = this.mirror(account, src.url);
    return this.serialized(bare, () => this.limited(async () => {
      try {
        const checked = await checkSource(src.url, this.o.policy);
        if (!checked.ok) throw new Refused(checked.reason, checked.detail);
        const env = this.env(fetchConfig(checked.target, checked.pinned, src.credentials));
        const fetch = async (cwd: string, refspecs: string[], prune: boolean) =>
          this.git(['fetch', ...(prune ? ['--prune'] : []), '--force', '--no-tags', '--quiet', '--', checked.gitUrl, ...refspecs], cwd, env);
        const heads = ['+refs/heads/*:refs/heads/*', '+refs/tags/*:refs/tags/*'];
        if (existsSync(bare)) await fetch(bare, heads, true);
        else {
          // A new mirror appears only once a first fetch succeeded (no empty mirrors of refusals).
          mkdirSync(join(this.accountDir(account), 'repos'), { recursive: true, mode: 0o700 });
          const tmp = mkdtempSync(join(this.accountDir(account), 'repos', 'tmp-'));
          try {
            await this.git(['init', '--quiet', '--bare', tmp], tmp, this.env(localConfig()));
            await fetch(tmp, heads, false);
            renameSync(tmp, bare);
          } catch (err) {
            rmSync(tmp, { recursive: true, force: true });
            throw err;
          }
        }
        const local = this.env(localConfig());
        if (FULL_SHA_RE.test(src.ref)) {
          const known = await this.git(['cat-file', '-t', src.ref], bare, local).catch(() => '');
          // A commit no branch or tag reaches: ask for it by id.
          if (known.trim() !== 'commit') await fetch(bare, [src.ref], false);
        }
        // --verify --quiet exits 1 without a word for a ref that does not exist: that is a refusal too.
        const r = await runGit(['rev-parse', '--verify', '--quiet', '--end-of-options', `${src.ref}^{commit}`], bare, local, this.o.timeoutMs);
        const commit = r.stdout.trim();
        if (r.code !== 0 || !FULL_SHA_RE.test(commit)) throw new Refused('no_such_ref', `no commit named ${src.ref} (rev-parse exited ${r.code})`);
        touch(bare);
        return commit;
      } catch (err) {
        throw this.refuse(account, src, err);
      }
    }));
  }

  /** A plain tree of the commit (checked out once, then reused); the commit must have been resolved for this account. */
  async tree(account: string, url: string, commit: string): Promise<string> {
    if (!FULL_SHA_RE.test(commit)) throw new TetherError('invalid_commit', `not a full commit SHA: ${commit}`, { status: 400 });
    const trees = join(this.accountDir(account), 'trees');
    const target = join(trees, commit);
    const bare = this.mirror(account, url);
    return this.serialized(bare, async () => {
      if (existsSync(target)) {
        touch(target);
        return target;
      }
      mkdirSync(trees, { recursive: true, mode: 0o700 });
      const tmp = mkdtempSync(join(trees, 'tmp-'));
      const env = this.env(localConfig());
      try {
        await this.git(['clone', '--quiet', '--no-checkout', '--shared', '--', bare, tmp], trees, env);
        await this.git(['-c', 'advice.detachedHead=false', 'checkout', '--quiet', '--detach', commit], tmp, env);
        rmSync(join(tmp, '.git'), { recursive: true, force: true });
        renameSync(tmp, target);
      } catch (err) {
        rmSync(tmp, { recursive: true, force: true });
        throw this.refuse(account, { url, ref: commit }, err);
      }
      return target;
    });
  }

  /**
   * Removes what is no longer needed: mirrors of (account, URL) pairs not in `keep` (the source
   * was replaced or its account is gone), mirrors and trees unused for `maxIdleMs`, leftovers of
   * interrupted work, and the shared cache layout of earlier versions.
   */
  async collect(keep: readonly { account: string; url: string }[], maxIdleMs: number, now = Date.now()): Promise<{ removed: string[] }> {
    const keepSet = new Set(keep.map((k) => this.mirror(k.account, k.url)));
    const removed: string[] = [];
    const idle = (p: string) => {
      try {
        return now - statSync(p).mtimeMs > maxIdleMs;
      } catch {
        return false;
      }
    };
    for (const legacy of ['repos', 'trees']) {
      const p = join(this.dir, legacy);
      if (existsSync(p)) {
        rmSync(p, { recursive: true, force: true });
        removed.push(p);
      }
    }
    const accounts = join(this.dir, 'accounts');
    for (const a of readdirSync(accounts)) {
      const base = join(accounts, a);
      for (const sub of ['repos', 'trees']) {
        const d = join(base, sub);
        if (!existsSync(d)) continue;
        for (const name of readdirSync(d)) {
          const p = join(d, name);
          // An interrupted fetch or checkout leaves tmp-*; one still in progress is younger than an hour.
          const gone = name.startsWith('tmp-') ? now - statSync(p).mtimeMs > Math.min(maxIdleMs, 3_600_000) : sub === 'repos' ? !keepSet.has(p) || idle(p) : idle(p);
          if (!gone) continue;
          // Under the mirror's lock: a fetch of it in progress finishes first.
          await this.serialized(sub === 'repos' ? p : `${p}:tree`, async () => rmSync(p, { recursive: true, force: true }));
          removed.push(p);
        }
      }
      if (readdirSync(base).every((s) => !existsSync(join(base, s)) || readdirSync(join(base, s)).length === 0)) rmSync(base, { recursive: true, force: true });
    }
    return { removed };
  }
}

function touch(p: string): void {
  const t = new Date();
  try {
    utimesSync(p, t, t);
  } catch {
    // gone meanwhile: the next use recreates it
  }
}
