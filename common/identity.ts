/**
 * How an agent's identity is written into its certificate, and read back. The control plane
 * issues certificates whose subject is CN=<agentId>, O=<aid>, OU=<cid> and whose SAN holds the
 * URI tether://agent/<aid>/<cid>/<role>[/<nid>]. The control plane still authorises each request
 * by the certificate's serial in its database, so a certificate is worth nothing once revoked.
 */
import type { AgentRole } from './wire.ts';

export interface AgentIdentity {
  agentId: string;
  aid: string;
  cid: string;
  role: AgentRole;
  nid: string | null;
}

export function identityUri(id: AgentIdentity): string {
  const base = `tether://agent/${id.aid}/${id.cid}/${id.role}`;
  return id.nid ? `${base}/${id.nid}` : base;
}

export function parseIdentityUri(uri: string, agentId: string): AgentIdentity | undefined {
  const m = /^tether:\/\/agent\/([a-z0-9]{5})\/([a-z0-9]{3,16})\/(node|cluster-agent)(?:\/([a-z0-9-]{1,63}))?$/.exec(uri);
  if (!m) return undefined;
  return { agentId, aid: m[1]!, cid: m[2]!, role: m[3] as AgentRole, nid: m[4] ?? null };
}
