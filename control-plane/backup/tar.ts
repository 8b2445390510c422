/**
 * The smallest tar (POSIX ustar) the backup needs: regular files with plain names, written and read
 * as streams (the database can be large), so `tar -tzvf backup.tar.gz` shows what a backup holds
 * and `tar -xzf` can open one by hand. Sizes above ustar's 8 GiB use GNU's base-256 field, which
 * GNU tar and bsdtar read. The reader takes untrusted input: every header is checked and every
 * size bounded by the caller before a byte is written.
 */
import type { Readable, Writable } from 'node:stream';
import { once } from 'node:events';

const BLOCK = 512;

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function writeSize(h: Buffer, size: number) {
  if (size < 8 ** 11) {
    h.write(octal(size, 12), 124, 'ascii');
    return;
  }
  // GNU base-256: the top bit of the first byte set, the number big-endian in the rest.
  h.fill(0, 124, 136);
  h[124] = 0x80;
  let v = BigInt(size);
  for (let i = 135; i > 124 && v > 0n; i--) {
    h[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

function readSize(h: Buffer): number {
  if (h[124]! & 0x80) {
    let v = 0n;
    for (let i = 125; i < 136; i++) v = (v << 8n) | BigInt(h[i]!);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error('tar: entry size out of range');
    return Number(v);
  }
  return parseOctal(h, 124, 12, 'size');
}

function parseOctal(h: Buffer, at: number, len: number, what: string): number {
  const s = h.toString('ascii', at, at + len).replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]*$/.test(s)) throw new Error(`tar: bad ${what} field`);
  return s === '' ? 0 : parseInt(s, 8);
}

function checksum(h: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return sum;
}

/** A ustar header for a regular file. */
export function tarHeader(name: string, size: number, mode: number, mtimeMs: number): Buffer {
  if (!/^[A-Za-z0-9._-]{1,99}$/.test(name)) throw new Error(`tar: unsupported entry name ${name}`);
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 'ascii');
  h.write(octal(mode & 0o7777, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  writeSize(h, size);
  h.write(octal(Math.floor(mtimeMs / 1000), 12), 136, 'ascii');
  h[156] = 0x30; // '0': regular file
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  h.write(`${checksum(h).toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

export const padding = (size: number): Buffer => Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
/** Two zero blocks end an archive. */
export const trailer = (): Buffer => Buffer.alloc(2 * BLOCK);

export interface TarEntry {
  name: string;
  size: number;
  mode: number;
}

/**
 * Reads `input` (an uncompressed tar stream) entry by entry. For each regular file, `open(entry)`
 * returns where its bytes go (or throws to refuse it); the stream is awaited for back-pressure.
 */
export async function readTar(input: Readable, open: (e: TarEntry) => Writable): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  let buf: Buffer = Buffer.alloc(0);
  let current: { entry: TarEntry; out: Writable; left: number; pad: number } | undefined;
  let zeroBlocks = 0;
  let ended = false;
  for await (const chunk of input as AsyncIterable<Buffer>) {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    for (;;) {
      if (current) {
        if (current.left > 0) {
          if (buf.length === 0) break;
          const part = buf.subarray(0, Math.min(buf.length, current.left));
          buf = buf.subarray(part.length);
          current.left -= part.length;
          if (!current.out.write(part)) await once(current.out, 'drain');
          continue;
        }
        if (buf.length < current.pad) break;
        buf = buf.subarray(current.pad);
        const out = current.out;
        current = undefined;
        await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
        continue;
      }
      if (ended || buf.length < BLOCK) break;
      const h = buf.subarray(0, BLOCK);
      buf = buf.subarray(BLOCK);
      if (h.every((b) => b === 0)) {
        if (++zeroBlocks === 2) ended = true;
        continue;
      }
      zeroBlocks = 0;
      if (parseOctal(h, 148, 8, 'checksum') !== checksum(h)) throw new Error('tar: header checksum mismatch (not a tar archive, or a damaged one)');
      const type = String.fromCharCode(h[156]!);
      const name = h.toString('ascii', 0, 100).replace(/\0.*$/s, '');
      const prefix = h.toString('ascii', 345, 500).replace(/\0.*$/s, '');
      if (type !== '0' && type !== '\0') throw new Error(`tar: entry ${name} is not a regular file (type ${JSON.stringify(type)})`);
      if (prefix || !/^[A-Za-z0-9._-]{1,99}$/.test(name) || name === '.' || name === '..') throw new Error(`tar: unexpected entry name ${JSON.stringify(prefix ? `${prefix}/${name}` : name)}`);
      const entry: TarEntry = { name, size: readSize(h), mode: parseOctal(h, 100, 8, 'mode') };
      entries.push(entry);
      current = { entry, out: open(entry), left: entry.size, pad: padding(entry.size).length };
    }
  }
  if (current) throw new Error(`tar: archive ends inside ${current.entry.name}`);
  if (!ended && entries.length === 0) throw new Error('tar: empty or truncated archive');
  return entries;
}
