/**
 * `tether-cluster-agent`: reads its configuration (flags over env), starts the agent and stops it
 * gracefully on SIGTERM/SIGINT (running work gets the shutdown grace period). Exit codes: 0 after
 * a graceful stop, 1 when it cannot start (no identity, bad configuration), 2 bad usage.
 */
import { CommanderError } from 'commander';
import { ZodError } from 'zod';
import { Masker } from '../../common/agent/masker.ts';
import { errorMessage } from '../../common/errors.ts';
import { createLogger } from '../../common/logger.ts';
import { installProcessNet } from '../../common/process-net.ts';
import { startClusterAgent, type RunningAgent } from './agent.ts';
import { configFromArgv, type ClusterAgentConfig } from '../config/cluster.config.ts';

// The one masker: the runtime registers every resolved secret with it, and the log masks with it.
const masker = new Masker();
const log = createLogger('tether-cluster-agent', {}, (line) => masker.apply(line));
// An unhandled rejection or uncaught exception: logged (masked) under `err`, then exit 1.
installProcessNet(log);

let config: ClusterAgentConfig;
try {
  config = configFromArgv(process.argv, process.env);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
  const detail = err instanceof ZodError ? err.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') : errorMessage(err);
  log.fatal({ detail }, 'invalid configuration');
  process.exit(2);
}

const startup = new AbortController();
let agent: RunningAgent | undefined;
let stopping = false;
const stop = (sig: string) => {
  if (stopping) return;
  stopping = true;
  log.info({ signal: sig }, 'signal received: stopping');
  startup.abort();
  void (async () => {
    try {
      await agent?.stop();
    } catch (err) {
      log.error({ err }, 'error while stopping');
    }
    process.exit(0);
  })();
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

try {
  agent = await startClusterAgent(config, log, startup.signal, masker);
  if (stopping) await agent.stop();
} catch (err) {
  if (!stopping) {
    log.fatal({ err }, 'cannot start the cluster agent');
    process.exit(1);
  }
}
