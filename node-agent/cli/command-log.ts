import { pino } from 'pino';
import { REDACT_CENSOR, REDACT_PATHS, type Logger } from '../../common/logger.ts';

/** One-shot commands log to stderr so stdout stays their output (--json). */
export function commandLogger(): Logger {
  return pino(
    { name: 'tether-node', level: process.env.TETHER_LOG_LEVEL ?? 'warn', redact: { paths: REDACT_PATHS, censor: REDACT_CENSOR }, base: { pid: process.pid } },
    pino.destination(2),
  );
}
