/**
 * What validation needs to know about an OpenTofu module without running tofu: its top-level
 * `variable` blocks (with or without a default) and `output` blocks (sensitive or not). A small
 * scanner that skips comments, strings and heredocs; pure.
 */
export interface TfModuleFacts {
  variables: Map<string, { hasDefault: boolean }>;
  outputs: Map<string, { sensitive: boolean }>;
}

/** Comments and string contents blanked (quotes and newlines kept); labels remembered by offset. */
function skeleton(src: string): { clean: string; strings: Map<number, string> } {
  const out = src.split('');
  const strings = new Map<number, string>();
  const blank = (from: number, to: number) => {
    for (let k = from; k < to && k < out.length; k++) if (out[k] !== '\n') out[k] = ' ';
  };
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (c === '#' || (c === '/' && src[i + 1] === '/')) {
      const end = src.indexOf('\n', i);
      const stop = end === -1 ? src.length : end;
      blank(i, stop);
      i = stop;
    } else if (c === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      const stop = end === -1 ? src.length : end + 2;
      blank(i, stop);
      i = stop;
    } else if (c === '"') {
      let j = i + 1;
      let interp = 0;
      while (j < src.length) {
        const d = src[j]!;
        if (d === '\\') j += 2;
        else if (d === '$' && src[j + 1] === '{') {
          interp++;
          j += 2;
        } else if (d === '}' && interp > 0) {
          interp--;
          j++;
        } else if (d === '"' && interp === 0) break;
        else if (d === '\n' && interp === 0) break;
        else j++;
      }
      strings.set(i, src.slice(i + 1, j));
      blank(i + 1, j);
      i = j + 1;
    } else if (c === '<' && src[i + 1] === '<') {
      const m = /^<<-?([A-Za-z_][A-Za-z0-9_]*)[ \t]*\n/.exec(src.slice(i, i + 200));
      if (!m) {
        i += 2;
        continue;
      }
      const marker = m[1]!;
      const bodyStart = i + m[0].length;
      const endRe = new RegExp(`^[ \\t]*${marker}[ \\t]*$`, 'm');
      const rest = src.slice(bodyStart);
      const em = endRe.exec(rest);
      const stop = em ? bodyStart + em.index + em[0].length : src.length;
      blank(i, stop);
      i = stop;
    } else i++;
  }
  return { clean: out.join(''), strings };
}

function matchingBrace(clean: string, open: number): number {
  let depth = 0;
  for (let k = open; k < clean.length; k++) {
    if (clean[k] === '{') depth++;
    else if (clean[k] === '}' && --depth === 0) return k;
  }
  return clean.length;
}

export function parseTfModule(files: readonly string[]): TfModuleFacts {
  const facts: TfModuleFacts = { variables: new Map(), outputs: new Map() };
  for (const src of files) {
    const { clean, strings } = skeleton(src);
    let depth = 0;
    for (let i = 0; i < clean.length; i++) {
      const c = clean[i];
      if (c === '{') depth++;
      else if (c === '}') depth = Math.max(0, depth - 1);
      else if (depth === 0 && (i === 0 || /\s/.test(clean[i - 1]!))) {
        const m = /^(variable|output)\s+(?:"|([A-Za-z_][A-Za-z0-9_-]*))/.exec(clean.slice(i, i + 300));
        if (!m) continue;
        const labelAt = i + m[0].length - 1;
        const label = m[2] ?? strings.get(labelAt) ?? '';
        const open = clean.indexOf('{', i + m[0].length);
        if (open === -1) break;
        const close = matchingBrace(clean, open);
        const body = clean.slice(open + 1, close);
        if (m[1] === 'variable') facts.variables.set(label, { hasDefault: /(^|\n)[ \t]*default[ \t]*=/.test(body) });
        else facts.outputs.set(label, { sensitive: /(^|\n)[ \t]*sensitive[ \t]*=[ \t]*true\b/.test(body) });
        i = close;
      }
    }
  }
  return facts;
}
