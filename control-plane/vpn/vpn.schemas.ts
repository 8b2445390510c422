/**
 * Request bodies of the VPN routes. The node agent keeps its own copy of the agent-route shapes
 * (node-agent/vpn/vpn.wire.ts) because the two programs share only common/.
 */
import { z } from 'zod';

export const WG_KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
export const wgKeySchema = z.string().regex(WG_KEY_RE, 'a WireGuard key: 32 bytes in base64');

export const vpnRegisterSchema = z
  .object({
    wg0: z.object({ publicKey: wgKeySchema, listenPort: z.number().int().min(1).max(65535) }).strict(),
    wg1: z.object({ publicKey: wgKeySchema, listenPort: z.number().int().min(1).max(65535) }).strict(),
    endpointHost: z.string().min(1).max(253).regex(/^[A-Za-z0-9.:-]+$/, 'an IP address or DNS name'),
  })
  .strict();
export type VpnRegister = z.infer<typeof vpnRegisterSchema>;

export const createVpnUserSchema = z
  .object({
    name: z.string().min(1).max(63).regex(/^[a-z0-9]([-a-z0-9.@_]*[a-z0-9])?$/, 'lowercase alphanumerics and -.@_'),
    /** The user's own public key; without it the control plane generates a key pair and returns the private key once. */
    publicKey: wgKeySchema.optional(),
  })
  .strict();
