/**
 * Wire shapes of the VPN routes (/v1/agent/vpn/*): the control plane parses registrations with
 * them, the node agent parses the configuration it gets back before it changes an interface (it
 * never trusts the wire).
 */
import { z } from 'zod';

export const WG_KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
export const wgKeySchema = z.string().regex(WG_KEY_RE, 'a WireGuard key: 32 bytes in base64');
const ipv4 = z.string().regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/, 'an IPv4 address');
const cidr4 = z.string().regex(/^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/, 'an IPv4 CIDR');
/** host:port, with [v6]:port for IPv6. */
const endpoint = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'host:port');

export const vpnRegisterSchema = z
  .object({
    wg0: z.object({ publicKey: wgKeySchema, listenPort: z.number().int().min(1).max(65535) }).strict(),
    wg1: z.object({ publicKey: wgKeySchema, listenPort: z.number().int().min(1).max(65535) }).strict(),
    /** Address (IP or DNS name) peers reach this node at. */
    endpointHost: z.string().min(1).max(253).regex(/^[A-Za-z0-9.:-]+$/, 'an IP address or DNS name'),
  })
  .strict();
export type VpnRegister = z.infer<typeof vpnRegisterSchema>;

export const vpnConfigSchema = z.object({
  nid: z.string(),
  wg0: z.object({
    address: ipv4,
    network: cidr4,
    peers: z.array(z.object({ nid: z.string(), publicKey: wgKeySchema, endpoint: endpoint.nullable(), allowedIps: z.array(cidr4).min(1) })),
  }),
  wg1: z.object({
    address: ipv4,
    network: cidr4,
    peers: z.array(z.object({ name: z.string(), publicKey: wgKeySchema, allowedIps: z.array(cidr4).min(1) })),
  }),
});
export type VpnConfig = z.infer<typeof vpnConfigSchema>;
