/**
 * 405 Method Not Allowed for known paths: Express answers an unsupported method on a known path
 * with the same 404 as an unknown path. This fallback (mounted after every route) looks the path
 * up in the application's routes and, when some route serves it with other methods, answers 405
 * with an `Allow` header and the JSON error body.
 */
import type { Express, RequestHandler } from 'express';
import { errorBody } from '../../common/errors.ts';

/** The parts of Express 5's router layers (package `router`) this reads. */
interface Layer {
  match(path: string): { path: string } | false;
  route?: { methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
}

/** Methods some route of `stack` serves at `path` (sub-routers searched with their prefix removed). */
export function allowedMethods(stack: readonly Layer[], path: string, out = new Set<string>()): Set<string> {
  for (const layer of stack) {
    const m = layer.match(path);
    if (!m) continue;
    if (layer.route) {
      for (const [method, on] of Object.entries(layer.route.methods)) if (on && method !== '_all') out.add(method.toUpperCase());
      if (layer.route.methods.get) out.add('HEAD');
    } else if (layer.handle?.stack) {
      const rest = path.slice(m.path.length);
      allowedMethods(layer.handle.stack, rest.startsWith('/') ? rest : `/${rest}`, out);
    }
  }
  return out;
}

export function methodNotAllowed(app: Express, extra: Record<string, string[]> = {}): RequestHandler {
  return (req, res, next) => {
    const stack = (app as unknown as { router?: { stack?: Layer[] } }).router?.stack ?? [];
    const allowed = allowedMethods(stack, req.path);
    for (const m of extra[req.path] ?? []) allowed.add(m);
    if (allowed.size === 0 || allowed.has(req.method)) return next();
    const allow = [...allowed].sort().join(', ');
    if (!req.complete) res.set('connection', 'close'); // the body is not read
    res.status(405).set('allow', allow).json(errorBody('method_not_allowed', `${req.method} is not allowed on ${req.path}; allowed: ${allow}`));
  };
}
