/**
 * WireGuard keys, generated on this node with `wg genkey` and kept in a 0600 file under the
 * state directory. The private key never leaves the node and is never logged; only the public key
 * (`wg pubkey`) is sent to the control plane.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
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

/** PKCS#8 DER header of an X25519 private key; the 32 key bytes follow. */
const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');

/**
 * The public key of a WireGuard private key (base64), computed in process (X25519 with
 * node:crypto) rather than with `wg pubkey`; the key bytes are zeroed after use.
 */
export function publicKeyOf(privateKeyBase64: string): string {
  const der = Buffer.concat([X25519_PKCS8, Buffer.from(privateKeyBase64, 'base64')]);
  try {
    if (der.length !== X25519_PKCS8.length + 32) throw new Error('not a WireGuard key');
    const spki = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'der', type: 'spki' });
    return spki.subarray(spki.length - 32).toString('base64');
  } finally {
    der.fill(0);
  }
}

const publicKeys = new Map<string, { stamp: string; publicKey: string | null }>();

/**
 * The public key of the private key kept in `path` (null when there is none), recomputed only
 * when the file changes (one stat per call): what the heartbeat reports as an interface's key,
 * since the userspace API gives only the private key, which the agent never reads from it.
 */
export function publicKeyOfKeyFile(path: string): string | null {
  let stamp: string;
  try {
    const s = statSync(path);
    stamp = `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return null;
  }
  const hit = publicKeys.get(path);
  if (hit?.stamp === stamp) return hit.publicKey;
  const raw = readFileSync(path);
  let publicKey: string | null = null;
  try {
    const text = raw.toString('latin1').trim();
    publicKey = WG_KEY_RE.test(text) ? publicKeyOf(text) : null;
  } finally {
    raw.fill(0);
  }
  publicKeys.set(path, { stamp, publicKey });
  return publicKey;
}
