/**
 * Server-side pagination of the admin lists (issue 14: the console never loads 10,000 agents at
 * once). A page is at most PAGE_LIMIT_MAX items; its answer carries `nextCursor`, an opaque string
 * (base64url JSON of the last item's sort key) to pass back as `cursor` for the next page, or null
 * on the last page. A cursor is decoded and validated with zod before it reaches SQL.
 */
import { z } from 'zod';
import { badRequest } from '../common/errors.ts';

export const PAGE_LIMIT_MAX = 200;
export const PAGE_LIMIT_DEFAULT = 100;

export const pageLimit = z.coerce.number().int().min(1).max(PAGE_LIMIT_MAX).optional().describe(`items per page (default ${PAGE_LIMIT_DEFAULT}, at most ${PAGE_LIMIT_MAX})`);
export const cursorParam = z.string().min(1).max(400).regex(/^[A-Za-z0-9_-]+$/, 'not a cursor').optional().describe('nextCursor of the previous page');

export function encodeCursor(key: readonly (string | number)[]): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

/** The sort key in a cursor, checked against `schema` (a tuple); 400 `invalid_cursor` otherwise. */
export function decodeCursor<T>(raw: string | undefined, schema: z.ZodType<T>): T | undefined {
  if (raw === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    throw badRequest('cursor is not a cursor this server made', 'invalid_cursor');
  }
  const r = schema.safeParse(value);
  if (!r.success) throw badRequest('cursor is not a cursor this server made', 'invalid_cursor');
  return r.data;
}

/**
 * A page from rows fetched with `limit + 1`: the extra row only says that there is a next page,
 * whose cursor is the key of the page's last item.
 */
export function page<R, V>(rows: R[], limit: number, key: (r: R) => readonly (string | number)[], view: (r: R) => V): { items: V[]; nextCursor: string | null } {
  const more = rows.length > limit;
  const items = more ? rows.slice(0, limit) : rows;
  return { items: items.map(view), nextCursor: more ? encodeCursor(key(items.at(-1)!)) : null };
}
