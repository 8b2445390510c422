import { randomInt } from 'node:crypto';

const LOWER_ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** A random string of lowercase alphanumerics from the OS's CSPRNG (ids, OSID suffixes). */
export function randomAlnum(length: number): string {
  let s = '';
  for (let i = 0; i < length; i++) s += LOWER_ALNUM[randomInt(LOWER_ALNUM.length)];
  return s;
}
