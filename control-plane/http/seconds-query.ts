/**
 * An agent route's one query parameter in seconds (the poll's `wait`, a result's `next`: 0–120).
 * The query every agent sends (`name=N`, or none) is read without a URLSearchParams, an object and
 * a zod parse per request (each ~2 KB of garbage on the hot path, issue 18's heap profile); anything
 * else goes through the route's zod schema, its coercions and its errors (a ZodError: 400).
 */
import { z } from 'zod';

/** The longest hold an agent may ask for, in seconds. */
export const MAX_HOLD_SECONDS = 120;

export function secondsQuery<K extends string>(name: K) {
  const plain = new RegExp(`^${name}=(\\d{1,3})$`);
  const schema = z.object({ [name]: z.coerce.number().min(0).max(MAX_HOLD_SECONDS).optional() });
  const read = (search: string): number | undefined => {
    if (search === '') return undefined;
    const m = plain.exec(search);
    if (m) {
      const n = Number(m[1]);
      if (n <= MAX_HOLD_SECONDS) return n;
    }
    return schema.parse(Object.fromEntries(new URLSearchParams(search)))[name];
  };
  return { schema, read };
}
