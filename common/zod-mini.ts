/**
 * zod 4's tree-shakable build (`zod/mini`: the same validation as `zod`, functions instead of
 * methods) with zod's English messages, for what the node agent's daemon validates while it idles:
 * its configuration, the poll and heartbeat answers, the VPN configuration. Classic `zod` is ~580 KB
 * of bundled source (with its locales) that V8 keeps in the heap for as long as the process runs;
 * zod/mini with the English locale is ~30 KB (docs/performance.md, Node agent idle over hours).
 * Schemas built with either are the same kind of object: the control plane nests, parses and
 * converts (z.toJSONSchema) them alike. zod's configuration is global: classic `zod` sets the
 * same English locale when it loads.
 */
import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

config(en());

// Re-exported whole, imported as `import * as z from './zod-mini.ts'` and used by property only:
// esbuild then keeps only what is used (a namespace object passed around would keep all of zod's
// locales).
export * from 'zod/mini';
