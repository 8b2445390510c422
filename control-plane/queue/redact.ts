/**
 * Last-line redaction of text the control plane stores from agents. The agents mask the secret
 * values they resolved (only they know them); this catches what has a recognisable shape anyway:
 * Tether's own tokens and PEM private keys.
 */
const PATTERNS: [RegExp, string][] = [
  [/tether_(pat|bt)_[a-z0-9]{12}\.[A-Za-z0-9_-]+/g, 'tether_$1_[redacted]'],
  [/-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?(-----END \1PRIVATE KEY-----|$)/g, '[redacted private key]'],
];

export function redactText(text: string): string {
  let out = text;
  for (const [re, by] of PATTERNS) out = out.replace(re, by);
  return out;
}
