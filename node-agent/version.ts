import { readFileSync } from 'node:fs';

/**
 * The package version (package.json), read once. The path is relative to this module, and equally
 * to the bundle scripts/build.sh writes (dist/tether-node.mjs): both sit one folder below the root.
 */
export const VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

/** The Kubernetes package repository line `install` uses unless told otherwise. */
export const DEFAULT_KUBERNETES_VERSION = 'v1.33';
