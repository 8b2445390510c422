/**
 * Path containment for checkouts: a user-given sub-path must resolve (symlinks followed) to the
 * checkout itself or something inside it.
 */
import { realpathSync, statSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { CommandFailure } from '../../common/errors.ts';

/** True when `target` is `root` or below it (both already resolved). Pure. */
export function isInside(root: string, target: string): boolean {
  const rel = relative(root, target);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/**
 * The real path of `sub` inside `root`; refuses `..` escapes, absolute paths and symlinks that
 * lead outside, and requires a directory when `kind` says so.
 */
export function resolveInside(root: string, sub: string, kind: 'dir' | 'any' = 'dir'): string {
  if (sub.includes('\0') || isAbsolute(sub)) throw new CommandFailure('invalid_path', `path "${sub}" must be relative to the repository`);
  const realRoot = realpathSync(root);
  const lexical = resolve(realRoot, sub);
  if (!isInside(realRoot, lexical)) throw new CommandFailure('invalid_path', `path "${sub}" leaves the repository`);
  let real: string;
  try {
    real = realpathSync(lexical);
  } catch {
    throw new CommandFailure('path_not_found', `path "${sub}" does not exist in the repository`);
  }
  if (!isInside(realRoot, real)) throw new CommandFailure('invalid_path', `path "${sub}" leads outside the repository (symbolic link)`);
  if (kind === 'dir' && !statSync(real).isDirectory()) throw new CommandFailure('invalid_path', `path "${sub}" is not a directory`);
  return real;
}
