/**
 * Maps the control plane's validation errors onto the lines of the YAML the user submitted.
 * The server answers zod issues as `path.to.field: message; other.path: message` (formatIssues in
 * control-plane/queue/queue.service.ts); a spec's issues come as `invalid <type> spec: …` with
 * paths relative to `spec`. Each path is walked through the YAML document (the `yaml` package's
 * nodes keep their source ranges) down to the deepest node that exists: a missing field points at
 * its parent's key, an unknown one at itself. Pure, no DOM: unit-tested in test/console/.
 */
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node } from 'yaml';

export interface LineError {
  /** 1-based line in the YAML text, or null when no line can be named (then shown above the editor). */
  line: number | null;
  path: string;
  message: string;
}

/** Splits a server message into (path, message) pairs; a message without a path is one pair with path ''. */
export function parseIssues(message: string): { path: string[]; message: string }[] {
  let prefix: string[] = [];
  let rest = message;
  const spec = /^invalid [a-z_-]+ spec: /.exec(message);
  if (spec) {
    prefix = ['spec'];
    rest = message.slice(spec[0].length);
  }
  const parts = rest.split('; ');
  const out: { path: string[]; message: string }[] = [];
  for (const part of parts) {
    const m = /^([A-Za-z0-9_.\-()]+): (.*)$/s.exec(part);
    if (!m) return [{ path: [], message }];
    const p = m[1] === '(root)' ? [] : m[1]!.split('.');
    out.push({ path: [...prefix, ...p], message: m[2]! });
  }
  return out;
}

/** The 1-based line where `path` (or its deepest existing ancestor) is written in `source`. */
export function lineOfPath(source: string, path: readonly string[]): number | null {
  const lineCounter = new LineCounter();
  const doc = parseDocument(source, { lineCounter, keepSourceTokens: false });
  let node: unknown = doc.contents;
  let at: number | null = (node as Node | null)?.range?.[0] ?? null;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === seg);
      if (!pair) break;
      const keyStart = (pair.key as Node | null)?.range?.[0];
      if (keyStart !== undefined) at = keyStart;
      node = pair.value;
    } else if (isSeq(node)) {
      const item = node.items[Number(seg)] as Node | undefined;
      if (!item || !/^\d+$/.test(seg)) break;
      if (item.range) at = item.range[0];
      node = item;
    } else break;
  }
  return at === null ? null : lineCounter.linePos(at).line;
}

/** The server's error message as errors per line of the submitted YAML. */
export function errorsByLine(source: string, message: string): LineError[] {
  return parseIssues(message).map((i) => ({ line: i.path.length ? lineOfPath(source, i.path) : null, path: i.path.join('.'), message: i.message }));
}
