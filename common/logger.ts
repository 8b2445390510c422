import { pino, type Logger, type LoggerOptions } from 'pino';
import { REDACT_CENSOR, REDACT_PATHS } from './redact-paths.ts';

export type { Logger };

export { REDACT_CENSOR, REDACT_PATHS };

/**
 * The process's logger (JSON on stdout). With `mask`, every serialised line passes through it
 * before it is written: an agent gives its masker's `apply`, so a secret value is masked in its
 * own log whatever field or error (message, stack, cause) carries it.
 */
export function createLogger(name: string, opts: LoggerOptions = {}, mask?: (line: string) => string): Logger {
  const level = process.env.TETHER_LOG_LEVEL ?? process.env.LOG_LEVEL ?? 'info';
  const options: LoggerOptions = {
    name,
    level,
    redact: { paths: REDACT_PATHS, censor: REDACT_CENSOR },
    base: { pid: process.pid },
    ...opts,
  };
  if (!mask) return pino(options);
  return pino(options, { write: (line: string) => void process.stdout.write(mask(line)) });
}

/** A logger that writes nothing, for tests and library defaults. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
