/** Admin request bodies of the VPN routes; the agent-route shapes live in common/vpn.ts. */
import { z } from 'zod';
import { wgKeySchema } from '../../common/vpn.ts';

export { vpnRegisterSchema, type VpnRegister } from '../../common/vpn.ts';

export const createVpnUserSchema = z
  .object({
    name: z.string().min(1).max(63).regex(/^[a-z0-9]([-a-z0-9.@_]*[a-z0-9])?$/, 'lowercase alphanumerics and -.@_'),
    /** The user's own public key; without it the control plane generates a key pair and returns the private key once. */
    publicKey: z.optional(wgKeySchema),
  })
  .strict();
