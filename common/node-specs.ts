/**
 * The node agent's command specs (preflight, install, vpn-sync), in zod/mini: the node agent
 * validates a claimed command's spec with these without loading classic zod and the cluster
 * commands' schemas (common/specs.ts re-exports them, so the control plane validates the same).
 */
import * as z from './zod-mini.ts';

export const preflightSpecSchema = z.strictObject({});
export const installSpecSchema = z.strictObject({ dryRun: z.optional(z.boolean()) });
export const vpnSyncSpecSchema = z.strictObject({});
export type InstallSpec = z.infer<typeof installSpecSchema>;

export const nodeSpecSchemas = { preflight: preflightSpecSchema, install: installSpecSchema, 'vpn-sync': vpnSyncSpecSchema } as const;
