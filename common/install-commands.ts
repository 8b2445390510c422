/**
 * The commands that enrol an agent with a bootstrap token, as an operator copies them: the node
 * agent's `tether-node register …` and the cluster agent's `helm install … --set bootstrapToken=…`
 * (docs/node-agent.md, docs/cluster-agent.md). Pure; the control plane answers them with every
 * new bootstrap token (POST /v1/tokens) so the console shows them as they are.
 */

/** Quotes a word for a POSIX shell when it holds anything but plainly safe characters. */
export function shellWord(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'"'"'`)}'`;
}

export interface EnrolTarget {
  token: string;
  aid: string;
  role: 'node' | 'cluster-agent';
  controlPlane: boolean;
  /** The control plane's URL as the agent will dial it. */
  serverUrl: string;
  /** Where the operator saved the control plane's CA certificate. */
  caFile?: string;
}

/** The one command that enrols an agent of this role. */
export function enrolCommand(t: EnrolTarget): string {
  const ca = shellWord(t.caFile ?? 'ca.crt');
  if (t.role === 'node') {
    return ['tether-node register', `--token ${shellWord(t.token)}`, `--aid ${shellWord(t.aid)}`, `--control-plane ${t.controlPlane ? 1 : 0}`, `--server ${shellWord(t.serverUrl)}`, `--ca-file ${ca}`].join(' ');
  }
  return [
    'helm install tether-agent charts/cluster-agent --namespace tether-system --create-namespace',
    `--set controlPlane.url=${shellWord(t.serverUrl)}`,
    `--set-file controlPlane.caCert=${ca}`,
    `--set bootstrapToken=${shellWord(t.token)}`,
  ].join(' ');
}
