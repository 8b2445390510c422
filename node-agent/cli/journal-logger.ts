/**
 * The daemon's logger: pino's JSON lines (level, time, pid, name, child bindings, fields, msg),
 * written synchronously to stdout (the journal), redacted with pino's own redaction library
 * (@pinojs/redact, common/redact-paths.ts) and errors under `err` serialized by pino's own error
 * serializer (pino-std-serializers). Without pino itself: its transports load thread-stream and
 * worker_threads, and with sonic-boom and its stringifier it was ~0.6 MiB of heap and ~1.5 MiB of
 * RSS in a daemon that writes a few lines an hour (docs/performance.md, Node agent idle over hours).
 * The one-shot commands keep pino (command-log.ts). Typed as pino's Logger, which the shared
 * runtime takes: the methods it uses (trace … fatal, child, level, isLevelEnabled) behave as pino's.
 */
import { writeSync } from 'node:fs';
import { format } from 'node:util';
import Redact from '@pinojs/redact';
import { err as serializeErr } from 'pino-std-serializers';
import type { Logger } from '../../common/logger.ts';
import { REDACT_CENSOR, REDACT_PATHS } from '../../common/redact-paths.ts';

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
type LevelName = keyof typeof LEVELS;
const levelValue = (name: string): number => (name === 'silent' ? Infinity : (LEVELS[name as LevelName] ?? LEVELS.info));

export interface JournalLoggerOptions {
  name: string;
  /** trace, debug, info (default), warn, error, fatal or silent. */
  level?: string;
  /** Where a line goes (default: stdout, synchronously). */
  write?: (line: string) => void;
  /** For tests: the time of a line. */
  now?: () => number;
}

/** One redactor for the process (built once: it compiles the paths). */
let redactor: ((o: Record<string, unknown>) => Record<string, unknown>) | undefined;
const redact = (o: Record<string, unknown>) => (redactor ??= Redact({ paths: REDACT_PATHS, censor: REDACT_CENSOR, serialize: false }) as (o: Record<string, unknown>) => Record<string, unknown>)(o);

/** JSON.stringify, or with '[Circular]' for objects met again (what pino's stringifier writes). */
function stringify(o: unknown): string {
  try {
    return JSON.stringify(o);
  } catch {
    const seen = new WeakSet<object>();
    return JSON.stringify(o, (_k, v: unknown) => {
      if (typeof v === 'object' && v !== null) {
        if (seen.has(v)) return '[Circular]';
        seen.add(v);
      }
      return typeof v === 'bigint' ? v.toString() : v;
    });
  }
}

/** Writes to stdout synchronously; a full non-blocking pipe is retried for up to a second, then the line is dropped. */
function writeStdout(line: string): void {
  const buf = Buffer.from(line);
  let off = 0;
  for (let tries = 0; off < buf.length; ) {
    try {
      off += writeSync(1, buf, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || ++tries > 100) return;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
}

class JournalLogger {
  private min: number;
  private readonly o: Required<JournalLoggerOptions>;
  private readonly bound: Record<string, unknown>;

  constructor(o: Required<JournalLoggerOptions>, bound: Record<string, unknown>, min: number) {
    this.o = o;
    this.bound = bound;
    this.min = min;
  }

  get level(): string {
    return (Object.keys(LEVELS) as LevelName[]).find((k) => LEVELS[k] === this.min) ?? 'silent';
  }

  set level(name: string) {
    this.min = levelValue(name);
  }

  isLevelEnabled(name: string): boolean {
    return levelValue(name) >= this.min;
  }

  child(bindings: Record<string, unknown>): JournalLogger {
    return new JournalLogger(this.o, { ...this.bound, ...bindings }, this.min);
  }

  trace(...a: unknown[]) { this.write('trace', a); }
  debug(...a: unknown[]) { this.write('debug', a); }
  info(...a: unknown[]) { this.write('info', a); }
  warn(...a: unknown[]) { this.write('warn', a); }
  error(...a: unknown[]) { this.write('error', a); }
  fatal(...a: unknown[]) { this.write('fatal', a); }

  /** pino's call forms: (obj, msg?, ...args), (err, msg?), (msg, ...args); msg formatted like util.format. */
  private write(level: LevelName, args: unknown[]): void {
    const value = LEVELS[level];
    if (value < this.min) return;
    let [first, ...rest] = args;
    let fields: Record<string, unknown> = {};
    if (first instanceof Error) {
      fields = { err: first };
      if (rest.length === 0) rest = [first.message];
    } else if (typeof first === 'object' && first !== null) {
      fields = { ...(first as Record<string, unknown>) };
    } else {
      rest = [first, ...rest];
    }
    const msg = rest.length === 0 || rest[0] === undefined ? undefined : rest.length === 1 ? String(rest[0]) : format(...rest);
    const line: Record<string, unknown> = { level: value, time: this.o.now(), ...this.bound, ...fields };
    if ('err' in line) line.err = serializeErr(line.err as Error); // pino's one default serializer
    if (msg !== undefined) line.msg = msg;
    this.o.write(`${stringify(redact(line))}\n`);
  }
}

export function journalLogger(opts: JournalLoggerOptions): Logger {
  const o: Required<JournalLoggerOptions> = { level: 'info', write: writeStdout, now: Date.now, ...opts };
  return new JournalLogger(o, { pid: process.pid, name: o.name }, levelValue(o.level)) as unknown as Logger;
}
