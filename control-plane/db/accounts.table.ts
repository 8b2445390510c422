export interface AccountsTable {
  aid: string;
  name: string;
  created_at: number;
}

export interface ClustersTable {
  aid: string;
  cid: string;
  domain: string;
  created_at: number;
}
