/**
 * Which control-plane replica the daemon uses, kept in its state folder (`current-server`) for
 * `tether-node status`: written at start (the first URL) and at every move to another replica.
 * Best effort: a write that fails is logged, never stops the daemon.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/files.ts';
import type { Logger } from '../../common/logger.ts';

const FILE = 'current-server';

export function recordServer(stateDir: string, server: string, log: Logger): void {
  try {
    writeFileAtomic(join(stateDir, FILE), `${server}\n`, 0o600);
  } catch (err) {
    log.debug({ err }, 'cannot record the control plane in use');
  }
}

/** The replica the daemon last used (its URL, with the address when a name had several), if known. */
export function lastServer(stateDir: string): string | undefined {
  try {
    return readFileSync(join(stateDir, FILE), 'utf8').trim().slice(0, 2048) || undefined;
  } catch {
    return undefined;
  }
}
