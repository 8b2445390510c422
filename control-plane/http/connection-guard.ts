/**
 * Keeps anonymous connections from taking the file descriptors agents need. A connection is
 * *unauthenticated* from its TCP accept until it either finishes the TLS handshake with a valid
 * client certificate (an agent: never counted again) or has a request authenticated on it (an
 * admin's bearer token). Unauthenticated connections are capped in total (TLS handshakes in
 * progress included) and, once past the handshake, per client address.
 *
 * At the total cap a new connection takes the place of the oldest one still in its TLS handshake
 * (an attacker's connection that never sends a ClientHello is the oldest; an agent's handshake
 * takes milliseconds), so a flood slows agents' reconnection down but cannot lock them out. Only
 * when every counted connection is past its handshake is the new one refused. Handshakes are not
 * counted per address: agents behind one NAT reconnect all at once after a restart.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';

export interface ConnectionLimits {
  unauthenticatedPerAddress: number;
  unauthenticatedTotal: number;
}

/** What the guard did, for metrics and logs. */
export interface GuardCounters {
  refusedPerAddress: number;
  refusedTotal: number;
  evictedHandshakes: number;
}

interface Entry {
  raw: Socket;
  address: string;
  /** Past the TLS handshake (counted per address). */
  secured: boolean;
  counted: boolean;
}

export class ConnectionGuard {
  private readonly limits: ConnectionLimits;
  /** By `address|port` of the peer: the raw socket and the TLS socket over it both know it. */
  private readonly entries = new Map<string, Entry>();
  /** Connections still in their TLS handshake, oldest first (a Set iterates in insertion order). */
  private readonly handshaking = new Set<string>();
  private readonly perAddress = new Map<string, number>();
  private total = 0;
  readonly counters: GuardCounters = { refusedPerAddress: 0, refusedTotal: 0, evictedHandshakes: 0 };

  constructor(limits: ConnectionLimits) {
    this.limits = limits;
  }

  /** Unauthenticated connections now (handshakes in progress included). */
  get unauthenticated(): number {
    return this.total;
  }

  /** A new TCP connection, before TLS. Returns false when it was refused (and destroyed). */
  accept(raw: Socket): boolean {
    if (this.total >= this.limits.unauthenticatedTotal) {
      const oldest = this.handshaking.values().next().value;
      const victim = oldest === undefined ? undefined : this.entries.get(oldest);
      if (oldest === undefined || !victim) {
        this.counters.refusedTotal++;
        raw.destroy();
        return false;
      }
      this.counters.evictedHandshakes++;
      this.release(oldest);
      victim.raw.destroy();
    }
    const key = keyOf(raw);
    if (key === undefined || this.entries.has(key)) {
      raw.destroy(); // no peer address: already gone
      return false;
    }
    this.entries.set(key, { raw, address: raw.remoteAddress!, secured: false, counted: true });
    this.handshaking.add(key);
    this.total++;
    // on, not once: 'close' comes once, and once() would wrap the listener in a closure of its own.
    raw.on('close', () => {
      this.release(key);
      this.entries.delete(key);
    });
    return true;
  }

  /**
   * The TLS handshake is done. With a valid client certificate the connection leaves the count;
   * without, it is counted against its address, and refused (false) when the address is over its cap.
   */
  secured(socket: TLSSocket): boolean {
    const key = keyOf(socket);
    const e = key === undefined ? undefined : this.entries.get(key);
    if (key === undefined || !e) return true;
    this.handshaking.delete(key);
    if (!e.counted) return true;
    if (socket.authorized) {
      this.release(key);
      return true;
    }
    const n = this.perAddress.get(e.address) ?? 0;
    if (n >= this.limits.unauthenticatedPerAddress) {
      this.counters.refusedPerAddress++;
      this.release(key);
      return false;
    }
    e.secured = true;
    this.perAddress.set(e.address, n + 1);
    return true;
  }

  /** A request on this connection was authenticated: it no longer counts. */
  authenticated(socket: Socket | undefined): void {
    const key = socket && keyOf(socket);
    if (key !== undefined) this.release(key);
  }

  private release(key: string): void {
    const e = this.entries.get(key);
    this.handshaking.delete(key);
    if (!e || !e.counted) return;
    e.counted = false;
    this.total--;
    if (e.secured) {
      const n = (this.perAddress.get(e.address) ?? 1) - 1;
      if (n <= 0) this.perAddress.delete(e.address);
      else this.perAddress.set(e.address, n);
    }
  }
}

function keyOf(s: Socket): string | undefined {
  return s.remoteAddress === undefined || s.remotePort === undefined ? undefined : `${s.remoteAddress}|${s.remotePort}`;
}

/** This process's open-files limit (soft; Node raises it to the hard limit at start), or undefined. */
export function openFilesLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The default cap on unauthenticated connections: a quarter of the open-files limit (three
 * quarters stay for agents, one socket each, and the server's own files), at least 256 and at
 * most 16,384.
 */
export function defaultUnauthenticatedTotal(limit = openFilesLimit()): number {
  return Math.max(256, Math.min(16_384, Math.floor((limit ?? 4096) / 4)));
}
