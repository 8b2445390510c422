import type { AccountsTable, ClustersTable } from './accounts.table.ts';
import type { AgentsTable, CertificatesTable } from './agents.table.ts';
import type { CommandLogUsageTable, CommandLogsTable, CommandsTable } from './commands.table.ts';
import type { ApiTokensTable, BootstrapTokensTable } from './tokens.table.ts';
import type { BundleSourcesTable, InstanceVersionsTable, InstancesTable } from './bundles.table.ts';
import type { VpnNodesTable, VpnUsersTable } from './vpn.table.ts';
import type { SessionsTable } from './sessions.table.ts';
import type { RateLimitsTable, SharedSecretsTable } from './replicas.table.ts';

export interface Database {
  accounts: AccountsTable;
  clusters: ClustersTable;
  agents: AgentsTable;
  certificates: CertificatesTable;
  bootstrap_tokens: BootstrapTokensTable;
  api_tokens: ApiTokensTable;
  commands: CommandsTable;
  command_logs: CommandLogsTable;
  command_log_usage: CommandLogUsageTable;
  vpn_nodes: VpnNodesTable;
  vpn_users: VpnUsersTable;
  bundle_sources: BundleSourcesTable;
  instances: InstancesTable;
  instance_versions: InstanceVersionsTable;
  sessions: SessionsTable;
  shared_secrets: SharedSecretsTable;
  rate_limits: RateLimitsTable;
}
