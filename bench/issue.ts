/**
 * Pre-issues the simulated agents' identities (the harness does this on demand too):
 *   node bench/issue.ts [count]
 * Starts the bench control plane on its cached data folder, issues what is missing, stops it.
 */
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { startServer } from './lib/server.ts';
import { ensureIdentities } from './lib/identities.ts';
import { BENCH_CACHE } from './lib/util.ts';
import { freePort } from './lib/net.ts';

const count = Number(process.argv[2] ?? 1000);
mkdirSync(BENCH_CACHE, { recursive: true });
const server = await startServer({ dataDir: join(BENCH_CACHE, 'cp-data'), port: await freePort(), logFile: join(BENCH_CACHE, 'issue-server.log'), env: { TETHER_LOG_LEVEL: 'warn' } });
try {
  await ensureIdentities({ url: server.url, caPem: server.caPem, admin: server.admin, count, log: (s) => process.stderr.write(`${s}\n`) });
} finally {
  await server.stop();
}
