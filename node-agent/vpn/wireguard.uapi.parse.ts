/**
 * Parses the answer to a WireGuard cross-platform userspace API `get=1` request (the protocol
 * wireguard-go serves on /var/run/wireguard/<if>.sock; https://www.wireguard.com/xplatform/):
 * `key=value` lines, device keys first, then one block per peer starting at `public_key=`, ending
 * with `errno=N` and an empty line. Keys are hex in this protocol; they come out base64 like `wg`.
 *
 * Secrets: the device's `private_key=` and each peer's `preshared_key=` lines are recognised by
 * their first bytes and skipped without ever being decoded into a string, and every byte the
 * parser has consumed is overwritten with zeros, so no secret outlives the line that carried it.
 * Bounded: at most {@link MAX_UAPI_BYTES} in all and {@link MAX_LINE_BYTES} per line.
 */

export interface UapiPeer {
  publicKey: string;
  endpoint: string | null;
  allowedIps: string[];
  /** Seconds since the epoch, 0 = never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
}

export interface UapiDevice {
  listenPort: number;
  peers: UapiPeer[];
}

export type UapiOutcome = { done: false } | { done: true; ok: true; device: UapiDevice } | { done: true; ok: false; error: string };

/** A mesh of a few thousand peers is ~1–2 MB of answer. */
export const MAX_UAPI_BYTES = 8 * 1024 * 1024;
export const MAX_LINE_BYTES = 4096;

const NL = 0x0a;
const SECRET_PREFIXES = [Buffer.from('private_key='), Buffer.from('preshared_key=')];
const HEX_KEY = /^[0-9a-f]{64}$/;

/**
 * Incremental: `push` each chunk read from the socket (it is zeroed once consumed) until the
 * outcome is done. Pure: no I/O.
 */
export class UapiParser {
  private pending: Buffer = Buffer.alloc(0);
  private total = 0;
  private readonly device: UapiDevice = { listenPort: 0, peers: [] };
  private peer: UapiPeer | undefined;
  private sawErrno: number | undefined;
  private result: UapiOutcome = { done: false };

  push(chunk: Buffer): UapiOutcome {
    if (this.result.done) {
      chunk.fill(0);
      return this.result;
    }
    this.total += chunk.length;
    if (this.total > MAX_UAPI_BYTES) {
      chunk.fill(0);
      return this.fail(`the answer exceeds ${MAX_UAPI_BYTES} bytes`);
    }
    const prev = this.pending;
    const buf = prev.length ? Buffer.concat([prev, chunk]) : chunk;
    if (prev.length) {
      prev.fill(0);
      chunk.fill(0);
    }
    let start = 0;
    for (let nl = buf.indexOf(NL, start); nl !== -1 && !this.result.done; nl = buf.indexOf(NL, start)) {
      this.line(buf.subarray(start, nl));
      start = nl + 1;
    }
    const rest = buf.subarray(start);
    if (!this.result.done && rest.length > MAX_LINE_BYTES) this.fail(`a line longer than ${MAX_LINE_BYTES} bytes`);
    // The unfinished line is copied out; everything read so far is overwritten.
    this.pending = this.result.done ? Buffer.alloc(0) : Buffer.from(rest);
    buf.fill(0);
    return this.result;
  }

  /** The connection ended: done if the answer was complete. */
  end(): UapiOutcome {
    if (!this.result.done) this.fail('the connection ended before the answer did');
    return this.result;
  }

  private fail(error: string): UapiOutcome {
    this.pending.fill(0);
    this.pending = Buffer.alloc(0);
    this.result = { done: true, ok: false, error };
    return this.result;
  }

  private line(l: Buffer): void {
    if (l.length > MAX_LINE_BYTES) {
      this.fail(`a line longer than ${MAX_LINE_BYTES} bytes`);
      return;
    }
    if (l.length === 0) {
      // The empty line ends the answer, after errno=.
      if (this.sawErrno === undefined) this.fail('an empty line before errno=');
      else if (this.sawErrno !== 0) this.fail(`errno=${this.sawErrno}`);
      else this.result = { done: true, ok: true, device: this.device };
      return;
    }
    if (this.sawErrno !== undefined) {
      this.fail('data after errno=');
      return;
    }
    for (const p of SECRET_PREFIXES) if (l.length >= p.length && l.subarray(0, p.length).equals(p)) return; // unread
    const text = l.toString('latin1');
    const eq = text.indexOf('=');
    if (eq <= 0) {
      this.fail('a line without key=value');
      return;
    }
    const key = text.slice(0, eq);
    const value = text.slice(eq + 1);
    const peer = this.peer;
    switch (key) {
      case 'errno':
        this.sawErrno = /^\d{1,6}$/.test(value) ? Number(value) : -1;
        return;
      case 'public_key': {
        if (!HEX_KEY.test(value)) return void this.fail('a public_key that is not 32 bytes of hex');
        this.peer = { publicKey: Buffer.from(value, 'hex').toString('base64'), endpoint: null, allowedIps: [], latestHandshake: 0, rxBytes: 0, txBytes: 0 };
        this.device.peers.push(this.peer);
        return;
      }
      case 'listen_port':
        if (!peer) this.device.listenPort = int(value);
        return;
      case 'endpoint':
        if (peer) peer.endpoint = value;
        return;
      case 'allowed_ip':
        if (peer) peer.allowedIps.push(value);
        return;
      case 'last_handshake_time_sec':
        if (peer) peer.latestHandshake = int(value);
        return;
      case 'rx_bytes':
        if (peer) peer.rxBytes = int(value);
        return;
      case 'tx_bytes':
        if (peer) peer.txBytes = int(value);
        return;
      default:
        // fwmark, protocol_version, persistent_keepalive_interval, last_handshake_time_nsec, and keys
        // a newer implementation adds: not part of the heartbeat.
        return;
    }
  }
}

function int(v: string): number {
  return /^\d{1,20}$/.test(v) ? Number(v) : 0;
}

/** The whole answer at once (tests, and callers that already hold it). */
export function parseUapi(answer: Buffer): UapiOutcome {
  const p = new UapiParser();
  const r = p.push(answer);
  return r.done ? r : p.end();
}
