/** The CLI's stored credentials: $XDG_CONFIG_HOME/tether/credentials.json, 0600. */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/files.ts';

export interface Credentials {
  url?: string;
  apiKey?: string;
  caFile?: string;
}

function file(): string {
  return join(process.env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'tether', 'credentials.json');
}

export function readCredentials(): Credentials {
  const f = file();
  if (!existsSync(f)) return {};
  try {
    return JSON.parse(readFileSync(f, 'utf8')) as Credentials;
  } catch {
    return {};
  }
}

export function saveCredentials(c: Credentials): string {
  const f = file();
  writeFileAtomic(f, `${JSON.stringify(c, null, 2)}\n`, 0o600);
  return f;
}
