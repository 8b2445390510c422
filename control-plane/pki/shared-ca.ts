/**
 * One identity for every replica of a control plane on PostgreSQL. The CA (certificate and key)
 * lives in the database (shared_secrets `ca`), its key encrypted with AES-256-GCM under a key the
 * operator provides (`--ca-key-encryption-key-file`, TETHER_CA_KEY_ENCRYPTION_KEY: 32 random
 * bytes, base64 or hex), so a database dump alone does not give the CA away. The first replica
 * stores it — the data folder's CA when there is one (a single server moving to PostgreSQL keeps
 * its agents), a new one otherwise — and every replica reads it; each issues its own server
 * certificate from it (ca.ts), and writes ca.crt (public) into its data folder for clients.
 *
 * The TLS session-ticket keys (shared_secrets `tls_ticket_keys`) are shared the same way, so a
 * session made with one replica resumes on another: read at start and every minute, replaced
 * (compare-and-set: one replica of several wins) when older than 12 hours.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TetherError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/files.ts';
import type { Db } from '../db/database.ts';
import { getSharedSecret, putSharedSecretIfAbsent, replaceSharedSecret } from '../db/replicas.repository.ts';
import { createCa, ensureServerCertificate, type CaMaterial } from './ca.ts';

const AAD = Buffer.from('tether ca key v1');

function keyError(message: string): TetherError {
  return new TetherError('invalid_ca_key_encryption_key', message, { status: 400 });
}

/** The operator's key: 32 bytes as base64 (44 characters) or hex (64), surrounding whitespace ignored. */
export function parseKeyEncryptionKey(text: string): Buffer {
  const t = text.trim();
  let key: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(t)) key = Buffer.from(t, 'hex');
  else if (/^[A-Za-z0-9+/]{43}=$/.test(t)) key = Buffer.from(t, 'base64');
  if (key?.length !== 32) throw keyError('the CA key encryption key must be 32 bytes, base64 (44 characters, e.g. `openssl rand -base64 32`) or hex (64 characters)');
  return key;
}

export interface EncryptedKey {
  alg: 'A256GCM';
  iv: string;
  tag: string;
  data: string;
}

export function encryptCaKey(keyPem: string, kek: Buffer): EncryptedKey {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', kek, iv);
  c.setAAD(AAD);
  const data = Buffer.concat([c.update(keyPem, 'utf8'), c.final()]);
  return { alg: 'A256GCM', iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), data: data.toString('base64') };
}

export function decryptCaKey(e: EncryptedKey, kek: Buffer): string {
  try {
    const d = createDecipheriv('aes-256-gcm', kek, Buffer.from(e.iv, 'base64'));
    d.setAAD(AAD);
    d.setAuthTag(Buffer.from(e.tag, 'base64'));
    return Buffer.concat([d.update(Buffer.from(e.data, 'base64')), d.final()]).toString('utf8');
  } catch {
    // GCM's tag check: the wrong key, or a value changed in the database. Nothing else is said.
    throw new TetherError('ca_key_decryption_failed', 'the CA key in the database cannot be decrypted with this CA key encryption key (another key, or the stored value was altered)', { status: 500 });
  }
}

interface StoredCa {
  certPem: string;
  key: EncryptedKey;
}

/** The shared CA, stored by the first replica; this replica's server certificate issued from it. */
export async function loadOrCreateSharedCa(db: Db, kek: Buffer, dataDir: string, sans: string[], now = Date.now()): Promise<CaMaterial & { created: boolean; adopted: boolean }> {
  let stored = await getSharedSecret(db, 'ca');
  let created = false;
  let adopted = false;
  if (!stored) {
    const f = (n: string) => join(dataDir, n);
    const local = existsSync(f('ca.crt')) && existsSync(f('ca.key'));
    const ca = local ? { certPem: readFileSync(f('ca.crt'), 'utf8'), keyPem: readFileSync(f('ca.key'), 'utf8') } : createCa(now);
    const value: StoredCa = { certPem: ca.certPem, key: encryptCaKey(ca.keyPem, kek) };
    stored = await putSharedSecretIfAbsent(db, 'ca', JSON.stringify(value), now);
    const mine = (JSON.parse(stored.value) as StoredCa).certPem === ca.certPem;
    created = mine && !local;
    adopted = mine && local;
  }
  const ca = JSON.parse(stored.value) as StoredCa;
  const caKeyPem = decryptCaKey(ca.key, kek);
  const caCertPem = ca.certPem;
  // The public certificate for clients (`tether` finds data/ca.crt); the key stays in the database.
  const file = join(dataDir, 'ca.crt');
  const previous = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  if (previous !== caCertPem) writeFileAtomic(file, caCertPem, 0o644);
  // A server certificate from another CA (this folder's before the shared one) is reissued: ensureServerCertificate checks its issuer.
  return { ...ensureServerCertificate(dataDir, { caCertPem, caKeyPem }, sans, now), created, adopted };
}

const TICKET_ROTATE_MS = 12 * 3600 * 1000;

/** The shared session-ticket keys: the current 48 bytes and their version. */
export async function loadOrCreateTicketKeys(db: Db, now = Date.now()): Promise<{ keys: Buffer; version: number }> {
  let s = await getSharedSecret(db, 'tls_ticket_keys');
  if (!s) s = await putSharedSecretIfAbsent(db, 'tls_ticket_keys', JSON.stringify({ keys: randomBytes(48).toString('base64') }), now);
  if (now - s.updatedAt >= TICKET_ROTATE_MS) {
    // Old: replace them; if another replica did first, take theirs.
    if (!(await replaceSharedSecret(db, 'tls_ticket_keys', s.version, JSON.stringify({ keys: randomBytes(48).toString('base64') }), now))) {
      /* another replica rotated: read theirs below */
    }
    s = (await getSharedSecret(db, 'tls_ticket_keys'))!;
  }
  const keys = Buffer.from((JSON.parse(s.value) as { keys: string }).keys, 'base64');
  if (keys.length !== 48) throw new TetherError('invalid_ticket_keys', 'the shared TLS ticket keys in the database are not 48 bytes', { status: 500 });
  return { keys, version: s.version };
}
