/**
 * The command types, without their schemas (common/specs.ts): the wire envelope and the node
 * agent's idle daemon need the names only, not zod's schemas of every cluster command.
 */
export const CLUSTER_COMMAND_TYPES = ['helm', 'manifest', 'tofu', 'flow', 'diff'] as const;
export const NODE_COMMAND_TYPES = ['preflight', 'install', 'vpn-sync'] as const;
export const COMMAND_TYPES = [...CLUSTER_COMMAND_TYPES, ...NODE_COMMAND_TYPES] as const;
export type ClusterCommandType = (typeof CLUSTER_COMMAND_TYPES)[number];
export type NodeCommandType = (typeof NODE_COMMAND_TYPES)[number];
export type CommandType = (typeof COMMAND_TYPES)[number];

export function isNodeCommandType(type: string): type is NodeCommandType {
  return (NODE_COMMAND_TYPES as readonly string[]).includes(type);
}
