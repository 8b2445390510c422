/**
 * Builds the web console (console/src) into dist/console/: content-hashed assets under assets/,
 * index.html naming them, and a .gz and .br beside every file so the control plane serves them
 * precompressed (control-plane/http/console.routes.ts). Prints the first page's compressed
 * JavaScript and fails above the budget (issue 14: < 150 KB). Run by scripts/setup.sh when a
 * console source, the lock file or this script changed; `node console/build.ts [--out DIR]`.
 */
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { build, type Metafile } from 'esbuild';

const BUDGET_BYTES = 150 * 1024;
const here = import.meta.dirname;
const root = resolve(here, '..');
const outArg = process.argv.indexOf('--out');
const out = resolve(outArg > 0 ? process.argv[outArg + 1]! : join(root, 'dist', 'console'));
const tmp = `${out}.${process.pid}.tmp`;

rmSync(tmp, { recursive: true, force: true });
const result = await build({
  entryPoints: { app: join(here, 'src', 'main.tsx') },
  bundle: true,
  splitting: true, // pages loaded on demand (the YAML editor's parser) are chunks of their own
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  minify: true,
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: join(tmp, 'assets'),
  entryNames: '[name]-[hash]',
  chunkNames: 'chunk-[hash]',
  assetNames: '[name]-[hash]',
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
});

const meta: Metafile = result.metafile;
const outputs = Object.entries(meta.outputs).map(([path, o]) => ({ path: resolve(path), o }));
const entry = outputs.find((x) => x.o.entryPoint && resolve(x.o.entryPoint) === join(here, 'src', 'main.tsx'));
if (!entry) throw new Error('console build: no entry output');
const css = entry.o.cssBundle ? { path: resolve(entry.o.cssBundle) } : undefined;

// The first page's JavaScript: the entry and every chunk it imports statically (not dynamic imports).
const firstPage = new Set<string>();
const visit = (p: string) => {
  if (firstPage.has(p)) return;
  firstPage.add(p);
  const o = meta.outputs[Object.keys(meta.outputs).find((k) => resolve(k) === p)!]!;
  for (const i of o.imports) if (i.kind === 'import-statement' && !i.external) visit(resolve(i.path));
};
visit(entry.path);

const rel = (p: string) => `/assets/${basename(p)}`;
const preload = [...firstPage].filter((p) => p !== entry.path).map((p) => `    <link rel="modulepreload" href="${rel(p)}">\n`).join('');
const html = readFileSync(join(here, 'index.html'), 'utf8')
  .replace('<!--css-->', css ? `<link rel="stylesheet" href="${rel(css.path)}">` : '')
  .replace('<!--js-->', `${preload}    <script type="module" src="${rel(entry.path)}"></script>`);
writeFileSync(join(tmp, 'index.html'), html);

// Precompressed copies of everything (the server picks one by Accept-Encoding).
const files = [join(tmp, 'index.html'), ...readdirSync(join(tmp, 'assets')).map((f) => join(tmp, 'assets', f))];
const sizes = new Map<string, { raw: number; gz: number; br: number }>();
for (const f of files) {
  const data = readFileSync(f);
  const gz = gzipSync(data, { level: 9 });
  const br = brotliCompressSync(data, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: data.length } });
  writeFileSync(`${f}.gz`, gz);
  writeFileSync(`${f}.br`, br);
  sizes.set(f, { raw: data.length, gz: gz.length, br: br.length });
}

const sum = (k: 'raw' | 'gz' | 'br') => [...firstPage].reduce((n, p) => n + sizes.get(p)![k], 0);
const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;
const line = `console: first page JavaScript ${kb(sum('raw'))} (${kb(sum('gz'))} gzip, ${kb(sum('br'))} brotli; budget ${kb(BUDGET_BYTES)} compressed), ${firstPage.size} file(s)`;
process.stderr.write(`${line}\n`);
if (sum('gz') > BUDGET_BYTES) {
  rmSync(tmp, { recursive: true, force: true });
  process.stderr.write('console: over the budget; the build fails\n');
  process.exit(1);
}

// Swap in the new build (a request meanwhile gets the old files or a 503 for an instant).
mkdirSync(resolve(out, '..'), { recursive: true });
const old = `${out}.${process.pid}.old`;
try {
  statSync(out);
  renameSync(out, old);
} catch {
  // first build
}
renameSync(tmp, out);
rmSync(old, { recursive: true, force: true });
