/**
 * The web console (issue 14), served on the API's port: GET/HEAD of `/assets/<hashed name>` are the
 * build's files (immutable, cached a year), every other GET/HEAD outside the API (`/v1/…`,
 * `/healthz`, `/metrics`) is a client-side route answered with index.html (never cached). Files
 * come from dist/console/, built by scripts/setup.sh (console/build.ts) with a .br and .gz beside
 * each, sent when Accept-Encoding allows. A strict Content-Security-Policy (no inline script, same
 * origin only) and the usual hardening headers on every answer. Without a build: a 503 page
 * saying how to make one. A plain middleware, not routes, so unknown methods on these paths stay
 * 404s (methods.ts) and the API's paths are never shadowed.
 */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { RequestHandler, Response } from 'express';

export const CONSOLE_DIR = resolve(import.meta.dirname, '../../dist/console');

export const CONSOLE_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
};

const ASSET = /^\/assets\/([A-Za-z0-9_-]{1,100}\.(js|css|svg|woff2|png))$/;
const TYPES: Record<string, string> = {
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
  woff2: 'font/woff2',
  png: 'image/png',
  html: 'text/html; charset=utf-8',
};
const API = /^\/(v1|healthz|metrics)(\/|$)/;

const MISSING = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tether console not built</title></head>
<body><main><h1>The console is not built</h1>
<p>This control plane has no console build in <code>dist/console/</code>. Run <code>scripts/setup.sh</code>
in its checkout (<code>npm start</code> does it) and reload. The REST API under <code>/v1/</code> works without it.</p>
</main></body></html>
`;

/** Picks the precompressed variant the client accepts (brotli, then gzip, then none). */
export function pickEncoding(acceptEncoding: string | undefined): 'br' | 'gzip' | null {
  const accepted = new Map<string, number>();
  for (const part of (acceptEncoding ?? '').slice(0, 1000).split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';');
    if (!name) continue;
    const q = params.map((p) => /^\s*q=([0-9.]+)\s*$/.exec(p)).find(Boolean);
    accepted.set(name, q ? Number(q[1]) : 1);
  }
  const ok = (n: string) => (accepted.get(n) ?? accepted.get('*') ?? 0) > 0;
  if (ok('br')) return 'br';
  if (ok('gzip')) return 'gzip';
  return null;
}

async function sendFile(res: Response, path: string, type: string, acceptEncoding: string | undefined, head: boolean): Promise<boolean> {
  const enc = pickEncoding(acceptEncoding);
  const candidates: [string, string | null][] = enc === 'br' ? [[`${path}.br`, 'br'], [`${path}.gz`, 'gzip'], [path, null]] : enc === 'gzip' ? [[`${path}.gz`, 'gzip'], [path, null]] : [[path, null]];
  for (const [file, encoding] of candidates) {
    let body: Buffer;
    try {
      body = await readFile(file);
    } catch {
      continue;
    }
    res.set('content-type', type);
    res.set('vary', 'Accept-Encoding');
    if (encoding) res.set('content-encoding', encoding);
    res.set('content-length', String(body.length));
    if (head) res.end();
    else res.end(body);
    return true;
  }
  return false;
}

export function consoleRoutes(dir: string = CONSOLE_DIR): RequestHandler {
  return (req, res, next) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || API.test(req.path)) return next();
    const head = req.method === 'HEAD';
    res.set(CONSOLE_HEADERS);
    const accept = req.headers['accept-encoding'];
    const asset = ASSET.exec(req.path);
    void (async () => {
      if (asset) {
        res.set('cache-control', 'public, max-age=31536000, immutable');
        if (await sendFile(res, join(dir, 'assets', asset[1]!), TYPES[asset[2]!]!, accept, head)) return;
        res.set('cache-control', 'no-store');
        res.status(404).json({ error: { code: 'not_found', message: `no console asset ${asset[1]}` } });
        return;
      }
      if (req.path.startsWith('/assets/')) {
        res.status(404).json({ error: { code: 'not_found', message: 'no such console asset' } });
        return;
      }
      res.set('cache-control', 'no-cache');
      if (await sendFile(res, join(dir, 'index.html'), TYPES.html!, accept, head)) return;
      const built = await stat(dir).then(
        () => true,
        () => false,
      );
      res.status(503).set('content-type', TYPES.html!).set('retry-after', '60');
      res.end(head ? undefined : built ? MISSING.replace('has no console build', 'has an incomplete console build') : MISSING);
    })().catch(next);
  };
}
