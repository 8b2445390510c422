import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * Paths pino removes from every log line: tokens, API keys, private keys and certificates
 * never reach a log, whatever object they travel in.
 */
export const REDACT_PATHS = [
  'token', '*.token', 'bootstrapToken', '*.bootstrapToken',
  'apiKey', '*.apiKey', 'secret', '*.secret',
  'authorization', '*.authorization', 'req.headers.authorization', 'headers.authorization',
  'key', '*.key', 'privateKey', '*.privateKey', 'keyPem', '*.keyPem',
  'cert', '*.cert', 'certificate', '*.certificate', 'certPem', '*.certPem', 'csr', '*.csr',
  'caCertificate', '*.caCertificate', 'value', '*.value', 'values', '*.values', 'vars', '*.vars',
];

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
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
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
