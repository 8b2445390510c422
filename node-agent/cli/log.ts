import { pino } from 'pino';
import { REDACT_PATHS, createLogger, type Logger } from '../../common/logger.ts';

/** The daemon logs to stdout (journald); one-shot commands log to stderr so stdout stays their output (--json). */
export function daemonLogger(): Logger {
  return createLogger('tether-node');
}

export function commandLogger(): Logger {
  return pino(
    { name: 'tether-node', level: process.env.TETHER_LOG_LEVEL ?? 'warn', redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { pid: process.pid } },
    pino.destination(2),
  );
}
