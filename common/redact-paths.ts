/**
 * Paths pino removes from every log line: tokens, API keys, private keys and certificates
 * never reach a log, whatever object they travel in. Used by pino (common/logger.ts) and by the
 * node agent daemon's logger (node-agent/cli/journal-logger.ts, pino's redaction library without pino).
 */
export const REDACT_PATHS = [
  'token', '*.token', 'bootstrapToken', '*.bootstrapToken',
  'apiKey', '*.apiKey', 'secret', '*.secret',
  'authorization', '*.authorization', 'req.headers.authorization', 'headers.authorization',
  'key', '*.key', 'privateKey', '*.privateKey', 'keyPem', '*.keyPem',
  'cert', '*.cert', 'certificate', '*.certificate', 'certPem', '*.certPem', 'csr', '*.csr',
  'caCertificate', '*.caCertificate', 'value', '*.value', 'values', '*.values', 'vars', '*.vars',
];

export const REDACT_CENSOR = '[redacted]';
