#!/usr/bin/env node
/**
 * `tether-node`'s entry. The daemon's own command line, `tether-node agent [--config P]` (what the
 * systemd unit runs), starts the daemon directly; anything else (other commands, help, unknown
 * or malformed options, `agent` included) goes to the commander CLI in commands.ts, imported only
 * then: commander and the command definitions are ~1 MB of heap a daemon would otherwise keep
 * for months (docs/node-agent.md, Footprint). Exit codes as in commands.ts.
 */
import { ConfigError } from '../config/node.config.ts';
import { errorMessage } from '../../common/errors.ts';
import { plainAgentArgs, runAgent } from './agent.command.ts';
import { daemonLogger } from './log.ts';
import { installProcessNet } from '../../common/process-net.ts';

const daemon = plainAgentArgs(process.argv.slice(2));
if (daemon) {
  // An unhandled rejection or uncaught exception: logged under `err`, then exit 1 (systemd restarts it).
  installProcessNet(daemonLogger());
  try {
    await runAgent(daemon.config);
  } catch (err) {
    process.stderr.write(`tether-node: ${err instanceof ConfigError ? err.message : errorMessage(err)}\n`);
    process.exitCode = err instanceof ConfigError ? 2 : 1;
  }
} else {
  const { runCli } = await import('./commands.ts');
  await runCli(process.argv);
}
