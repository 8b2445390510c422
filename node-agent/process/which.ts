import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** The executable `name` resolves to on PATH (plus the system folders), or null. */
export function which(name: string, path = process.env.PATH ?? ''): string | null {
  const candidates = isAbsolute(name) || name.includes('/') ? [name] : [...path.split(delimiter).filter(Boolean), ...SYSTEM_PATH].map((d) => join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      /* next */
    }
  }
  return null;
}
