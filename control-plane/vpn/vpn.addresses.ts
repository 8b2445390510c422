/**
 * VPN address plan (pure). wg0, the node mesh, is 172.24.0.0/16; wg1, user access, is
 * 172.24.200.0/21 and is carved out of it (wg0 never hands out an address inside the /21).
 * Within wg1 the nodes take the first /24 (172.24.200.1–254) and users the rest
 * (172.24.201.1–172.24.207.254). Each host is a /32; the lowest free number is taken.
 */
export const WG0_NETWORK = '172.24.0.0/16';
export const WG1_NETWORK = '172.24.200.0/21';
const WG0_BASE = (172 << 24) | (24 << 16);
const WG1_BASE = WG0_BASE | (200 << 8);
const WG1_SIZE = 2048;

export const WG0_MAX_INDEX = 65534;
export const WG1_NODE_RANGE = [1, 254] as const;
export const WG1_USER_RANGE = [257, WG1_SIZE - 2] as const;

export function ipv4(n: number): string {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** wg0 host numbers that fall inside wg1's /21 are never used for wg0. */
export function isWg0Usable(i: number): boolean {
  return i >= 1 && i <= WG0_MAX_INDEX && !(i >= 200 * 256 && i < 200 * 256 + WG1_SIZE);
}

export const wg0Address = (i: number) => ipv4(WG0_BASE + i);
export const wg1Address = (i: number) => ipv4(WG1_BASE + i);

function lowestFree(used: Iterable<number>, from: number, to: number, ok: (i: number) => boolean = () => true): number | undefined {
  const taken = new Set(used);
  for (let i = from; i <= to; i++) if (ok(i) && !taken.has(i)) return i;
  return undefined;
}

export const nextWg0Index = (used: Iterable<number>) => lowestFree(used, 1, WG0_MAX_INDEX, isWg0Usable);
export const nextWg1NodeIndex = (used: Iterable<number>) => lowestFree(used, WG1_NODE_RANGE[0], WG1_NODE_RANGE[1]);
export const nextWg1UserIndex = (used: Iterable<number>) => lowestFree(used, WG1_USER_RANGE[0], WG1_USER_RANGE[1]);
