/**
 * Wire shapes of the VPN routes (/v1/agent/vpn/*): the control plane parses registrations with
 * them, the node agent parses the configuration it gets back before it changes an interface (it
 * never trusts the wire). zod/mini: the node agent's daemon parses the configuration on every sync
 * without loading classic zod (common/zod-mini.ts).
 */
import * as z from './zod-mini.ts';

export const WG_KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
export const wgKeySchema = z.string().check(z.regex(WG_KEY_RE, 'a WireGuard key: 32 bytes in base64'));
const ipv4 = z.string().check(z.regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/, 'an IPv4 address'));
const cidr4 = z.string().check(z.regex(/^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/, 'an IPv4 CIDR'));
/** host:port, with [v6]:port for IPv6. */
const endpoint = z.string().check(z.regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'host:port'));

const listenPort = z.int().check(z.minimum(1), z.maximum(65535));
export const vpnRegisterSchema = z.strictObject({
  wg0: z.strictObject({ publicKey: wgKeySchema, listenPort }),
  wg1: z.strictObject({ publicKey: wgKeySchema, listenPort }),
  /** Address (IP or DNS name) peers reach this node at. */
  endpointHost: z.string().check(z.minLength(1), z.maxLength(253), z.regex(/^[A-Za-z0-9.:-]+$/, 'an IP address or DNS name')),
});
export type VpnRegister = z.infer<typeof vpnRegisterSchema>;

export const vpnConfigSchema = z.object({
  nid: z.string(),
  wg0: z.object({
    address: ipv4,
    network: cidr4,
    peers: z.array(z.object({ nid: z.string(), publicKey: wgKeySchema, endpoint: z.nullable(endpoint), allowedIps: z.array(cidr4).check(z.minLength(1)) })),
  }),
  wg1: z.object({
    address: ipv4,
    network: cidr4,
    peers: z.array(z.object({ name: z.string(), publicKey: wgKeySchema, allowedIps: z.array(cidr4).check(z.minLength(1)) })),
  }),
});
export type VpnConfig = z.infer<typeof vpnConfigSchema>;
