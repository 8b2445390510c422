import type { Logger } from '../../common/logger.ts';
import { journalLogger } from './journal-logger.ts';

/** The daemon logs to stdout (journald), without pino (journal-logger.ts); one-shot commands log to stderr with pino (command-log.ts). */
export function daemonLogger(): Logger {
  return journalLogger({ name: 'tether-node', level: process.env.TETHER_LOG_LEVEL ?? process.env.LOG_LEVEL ?? 'info' });
}
