/** A user's WireGuard client configuration (wg-quick format): one peer per node, each only its wg1 /32. */
export interface ClientNode {
  nid: string;
  publicKey: string;
  endpoint: string;
  wg1Address: string;
}

export function renderClientConfig(u: { name: string; address: string; privateKey?: string }, nodes: ClientNode[]): string {
  const lines = [
    `# Tether VPN access for ${u.name}`,
    '[Interface]',
    `PrivateKey = ${u.privateKey ?? '<your private key>'}`,
    `Address = ${u.address}/32`,
  ];
  for (const n of nodes) {
    lines.push('', `# node ${n.nid}`, '[Peer]', `PublicKey = ${n.publicKey}`, `AllowedIPs = ${n.wg1Address}/32`, `Endpoint = ${n.endpoint}`, 'PersistentKeepalive = 25');
  }
  return `${lines.join('\n')}\n`;
}
