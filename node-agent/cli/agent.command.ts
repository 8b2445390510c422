/** `tether-node agent`: the daemon until SIGTERM/SIGINT, then a graceful stop. */
import { configPath, loadNodeConfig } from '../config/node.config.ts';
import { daemonLogger } from './log.ts';

/** The configuration flag of a plain `agent [--config P]` invocation, or undefined for anything else. */
export function plainAgentArgs(args: string[]): { config?: string } | undefined {
  if (args[0] !== 'agent') return undefined;
  if (args.length === 1) return {};
  if (args.length === 2 && args[1]!.startsWith('--config=') && args[1]!.length > '--config='.length) return { config: args[1]!.slice('--config='.length) };
  if (args.length === 3 && args[1] === '--config' && args[2] !== '' && !args[2]!.startsWith('-')) return { config: args[2] };
  return undefined;
}

export async function runAgent(configFlag: string | undefined): Promise<void> {
  process.umask(0o077);
  const config = loadNodeConfig(configPath(configFlag));
  const log = daemonLogger();
  const { startNodeAgent } = await import('../daemon/agent.ts');
  const agent = startNodeAgent(config, log);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'signal received: stopping');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await agent.stop();
}
