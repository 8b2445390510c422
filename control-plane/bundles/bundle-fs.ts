/**
 * The disk side of validation: facts about paths inside a bundle folder (symbolic links resolved
 * and contained), and reading bundle.yaml. Thin; the decisions are in validate.ts.
 */
import { lstatSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { TetherError } from '../../common/errors.ts';
import { BUNDLE_FILE } from './bundle.schema.ts';
import { validateBundle, type BundleFs, type PathFacts, type ValidationResult } from './validate.ts';

const MAX_WALK_ENTRIES = 5000;
const MAX_FILE_BYTES = 1024 * 1024;

function inside(root: string, target: string): boolean {
  const rel = relative(root, target);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

export function diskBundleFs(bundleDir: string): BundleFs {
  const root = realpathSync(bundleDir);
  const real = (rel: string): string | undefined => {
    try {
      return realpathSync(resolve(root, rel));
    } catch {
      return undefined;
    }
  };
  return {
    facts(rel: string): PathFacts {
      const lexical = resolve(root, rel);
      if (!inside(root, lexical)) return { kind: 'outside', detail: 'outside the bundle folder' };
      let isLink = false;
      try {
        isLink = lstatSync(lexical).isSymbolicLink();
      } catch {
        return { kind: 'missing' };
      }
      const target = real(rel);
      if (target === undefined) return isLink ? { kind: 'outside', detail: 'a dangling symbolic link' } : { kind: 'missing' };
      if (!inside(root, target)) return { kind: 'outside', detail: 'a symbolic link' };
      if (!statSync(target).isDirectory()) return { kind: 'file' };
      const files: string[] = [];
      for (const e of readdirSync(target, { withFileTypes: true })) {
        if (e.isFile()) files.push(e.name);
        else if (e.isSymbolicLink()) {
          const t = real(join(relative(root, target), e.name));
          if (t && inside(root, t) && statSync(t).isFile()) files.push(e.name);
        }
      }
      return { kind: 'dir', files: files.sort(), escapingLinks: escapingLinks(root, target) };
    },
    read(rel: string): string {
      const target = real(rel);
      if (!target || !inside(root, target)) throw new TetherError('invalid_path', `${rel} is not inside the bundle`);
      if (statSync(target).size > MAX_FILE_BYTES) return '';
      return readFileSync(target, 'utf8');
    },
  };
}

/** Symbolic links below `dir` (not following links to folders) whose target leaves `root` or is missing. */
function escapingLinks(root: string, dir: string): string[] {
  const out: string[] = [];
  let seen = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (++seen > MAX_WALK_ENTRIES) return;
      const p = join(d, e.name);
      if (e.isSymbolicLink()) {
        let t: string | undefined;
        try {
          t = realpathSync(p);
        } catch {
          t = undefined;
        }
        if (!t || !inside(root, t)) out.push(relative(root, p));
      } else if (e.isDirectory() && e.name !== '.git') walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

/** Validates the bundle in a folder (bundle.yaml at its top). */
export function validateBundleDir(bundleDir: string): ValidationResult {
  let text: string;
  try {
    text = readFileSync(join(bundleDir, BUNDLE_FILE), 'utf8');
  } catch {
    return { problems: [{ file: BUNDLE_FILE, path: '(root)', message: `no ${BUNDLE_FILE} in ${bundleDir}` }] };
  }
  return validateBundle(text, diskBundleFs(bundleDir));
}
