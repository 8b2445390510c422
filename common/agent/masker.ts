/**
 * The one masking point of an agent: it knows every secret value resolved by the executions in
 * progress, with the forms a tool may print it in, and replaces them with `***` in everything the
 * agent sends or writes: log lines (before they are split into lines), step reports, outputs,
 * error messages, and the agent's own JSON log (its destination masks every serialised line).
 *
 * Forms of a value that are masked: the value itself; each of its lines (a PEM key, a kubeconfig
 * printed line by line); its JSON-string escaping (`\n`, `\"` as in a JSON log line or a tool's
 * JSON); URL-encoding (`%2F`, `+` or `%20` for spaces); hex (lower and upper case); base64 and
 * base64url, also where the value sits at any byte offset inside a longer encoded text, and as
 * base64 wrapped at 64 or 76 columns.
 *
 * Short values (under 4 characters) are masked too, but only where they stand as a whole token
 * (not inside a longer word or number): masking every "ab" inside other words would say more
 * than it hides. Their encoded forms are not masked (they are too short to tell apart), and
 * neither are lines under 4 characters of a multi-line value (`}` of a JSON document).
 */
const MASK = '***';
/** Below this length a value (or a line of one) is masked only as a whole token. */
export const MIN_MASKED_LENGTH = 4;
/** An encoded form shorter than this is not registered (it would match by chance). */
const MIN_ENCODED_LENGTH = 6;

/** The forms of `value` that are masked (the value first). */
export function maskedForms(value: string): string[] {
  const forms = new Set<string>([value]);
  const add = (f: string) => {
    if (f.length >= MIN_ENCODED_LENGTH) forms.add(f);
  };
  const lines = value.split(/\r?\n/);
  if (lines.length > 1) for (const l of lines) if (l.trim().length >= MIN_MASKED_LENGTH) forms.add(l.trim());
  const bytes = Buffer.from(value, 'utf8');
  add(JSON.stringify(value).slice(1, -1));
  add(encodeURIComponent(value));
  add(encodeURIComponent(value).replace(/%20/g, '+'));
  add(bytes.toString('hex'));
  add(bytes.toString('hex').toUpperCase());
  const b64 = bytes.toString('base64');
  add(b64);
  add(b64.replace(/=+$/, ''));
  add(bytes.toString('base64url'));
  // Wrapped forms only for values up to 64 KiB (beyond, thousands of chunks would each be a form).
  if (b64.length <= 96 * 1024) for (const width of [64, 76]) if (b64.length > width) for (let i = 0; i < b64.length; i += width) add(b64.slice(i, i + width));
  // Inside a longer base64 text the value may start 1 or 2 bytes into a 3-byte group: the
  // characters that depend on the value's bytes alone are the same whatever surrounds it.
  for (const offset of [1, 2]) {
    const shifted = Buffer.concat([Buffer.alloc(offset), bytes]);
    const enc = shifted.toString('base64').replace(/=+$/, '');
    const first = Math.ceil((offset * 4) / 3);
    const end = (offset + bytes.length) % 3 === 0 ? enc.length : enc.length - 1;
    const core = enc.slice(first, end);
    add(core);
    add(core.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return [...forms];
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export class Masker {
  /** Registered values and how many executions registered each (forms are dropped at zero). */
  private readonly counts = new Map<string, number>();
  private forms: string[] = [];
  private shortTokens: RegExp | undefined;

  /** Registers a secret value; {@link release} it when the execution that resolved it ends. */
  add(value: string): void {
    if (value === '') return;
    this.counts.set(value, (this.counts.get(value) ?? 0) + 1);
    if (this.counts.get(value) === 1) this.rebuild();
  }

  release(value: string): void {
    const n = this.counts.get(value);
    if (n === undefined) return;
    if (n > 1) this.counts.set(value, n - 1);
    else {
      this.counts.delete(value);
      this.rebuild();
    }
  }

  /** A masker for one execution: what it adds is known here until {@link MaskScope.close}. */
  scope(): MaskScope {
    const mine: string[] = [];
    return {
      add: (v) => {
        if (v === '') return;
        mine.push(v);
        this.add(v);
      },
      close: () => {
        for (const v of mine.splice(0)) this.release(v);
      },
    };
  }

  private rebuild(): void {
    const long = new Set<string>();
    const short: string[] = [];
    for (const v of this.counts.keys()) {
      if (v.length < MIN_MASKED_LENGTH) short.push(v);
      else for (const f of maskedForms(v)) long.add(f);
    }
    // Longest first: a form that contains another is replaced whole, leaving no partial leak.
    this.forms = [...long].sort((a, b) => b.length - a.length);
    this.shortTokens = short.length
      ? new RegExp(`(?<![\\p{L}\\p{N}_])(?:${short.sort((a, b) => b.length - a.length).map(escapeRegExp).join('|')})(?![\\p{L}\\p{N}_])`, 'gu')
      : undefined;
  }

  apply(text: string): string {
    let out = text;
    for (const f of this.forms) if (out.includes(f)) out = out.split(f).join(MASK);
    if (this.shortTokens) out = out.replace(this.shortTokens, MASK);
    return out;
  }

  /** A copy of a JSON-like value with every string (keys included) masked. */
  applyDeep<T>(value: T): T {
    return this.deep(value, 0) as T;
  }

  private deep(value: unknown, depth: number): unknown {
    if (typeof value === 'string') return this.apply(value);
    if (depth > 100 || value === null || typeof value !== 'object') return value;
    if (Array.isArray(value)) return value.map((v) => this.deep(v, depth + 1));
    const out: Record<string, unknown> = Object.create(null);
    for (const [k, v] of Object.entries(value)) out[this.apply(k)] = this.deep(v, depth + 1);
    return out;
  }
}

export interface MaskScope {
  add(value: string): void;
  close(): void;
}
