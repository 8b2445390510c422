/**
 * WireGuard keys, generated on this node with `wg genkey` and kept in a 0600 file under the
 * state directory. The private key never leaves the node and is never logged; only the public key
 * (`wg pubkey`) is sent to the control plane.
 */
import { existsSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../../common/files.ts';
import { mustRun, type Runner } from '../process/run.ts';
import { WG_KEY_RE } from '../../common/vpn.ts';

export interface WgKey {
  privateKey: string;
  publicKey: string;
}

export async function ensureWgKey(path: string, run: Runner): Promise<WgKey & { created: boolean }> {
  let privateKey = existsSync(path) ? readFileSync(path, 'utf8').trim() : '';
  let created = false;
  if (!WG_KEY_RE.test(privateKey)) {
    privateKey = (await mustRun(run, 'wg', ['genkey'])).stdout.trim();
    if (!WG_KEY_RE.test(privateKey)) throw new Error('wg genkey produced something that is not a key');
    writeFileAtomic(path, `${privateKey}\n`, 0o600);
    created = true;
  }
  const publicKey = (await mustRun(run, 'wg', ['pubkey'], { input: `${privateKey}\n` })).stdout.trim();
  if (!WG_KEY_RE.test(publicKey)) throw new Error('wg pubkey produced something that is not a key');
  return { privateKey, publicKey, created };
}
