export interface BundleSourcesTable {
  aid: string;
  name: string;
  url: string;
  ref: string;
  /** Folder of bundle.yaml inside the repository ("." for its root). */
  path: string;
  /** The source's own git credentials (https), never logged or returned; NULL: none. */
  git_username: string | null;
  git_password: string | null;
  /** Migration 0013: the commit registration resolved; NULL before it. */
  commit_sha: string | null;
  /** JSON of the bundle's name, version, description and inputs at commit_sha; NULL: not validated there. */
  bundle_info: string | null;
  /** Why the bundle at commit_sha did not validate (bounded); NULL otherwise. */
  bundle_error: string | null;
  created_at: number;
  updated_at: number;
}

export interface InstancesTable {
  aid: string;
  /** `<type>-<5 alphanumerics>`; also the instance's namespace. */
  osid: string;
  cid: string;
  /** Name of the bundle source it was deployed from. */
  source: string;
  bundle_name: string;
  bundle_version: string;
  git_url: string;
  git_path: string;
  /** The commit the last apply pinned. */
  commit_sha: string;
  /** JSON of the validated bundle at that commit (what delete compiles from). */
  bundle: string;
  /** JSON of the resolved inputs (never secrets: those are secretRefs). */
  inputs: string;
  last_job_id: number;
  last_action: 'apply' | 'delete';
  /** JSON of the outputs computed from the last succeeded apply job (outputs_job_id). */
  outputs: string | null;
  outputs_job_id: number | null;
  /** The last diff job (migration 0007); its result is recorded below once it ended. */
  sync_job_id: number | null;
  /** 'synced' | 'drifted' | 'error' from sync_job_id once it ended; NULL: never checked. */
  sync_status: 'synced' | 'drifted' | 'error' | null;
  last_checked_at: number | null;
  /** Migration 0008 (scheduled drift checks, autoSync): NULL the server's interval, 0 off. */
  drift_interval_seconds: number | null;
  /** When the next scheduled check is due; NULL: not placed yet. */
  next_check_at: number | null;
  /** The diff job whose result sync_status holds (recorded once). */
  checked_job_id: number | null;
  /** 1: a check that finds drift submits a sync. */
  auto_sync: number;
  auto_sync_job_id: number | null;
  auto_sync_at: number | null;
  /** AutoSyncs in a row after which a check still found drift (reset by a synced check). */
  auto_sync_failures: number;
  created_at: number;
  updated_at: number;
}

/** One version of an instance's desired state (see migration 0006). */
export interface InstanceVersionsTable {
  aid: string;
  osid: string;
  /** 1, 2, …: each deploy, upgrade or rollback adds one. */
  version: number;
  action: 'deploy' | 'upgrade' | 'rollback' | 'sync';
  /** The version a rollback deployed again; NULL otherwise. */
  rollback_of: number | null;
  bundle_name: string;
  bundle_version: string;
  git_url: string;
  git_path: string;
  commit_sha: string;
  /** JSON of the validated bundle at that commit (a rollback compiles from it). */
  bundle: string;
  /** JSON of the given inputs (never secrets: those are secretRefs). */
  inputs: string;
  /** The apply job; no foreign key (retention may delete it); NULL: not known (backfilled). */
  job_id: number | null;
  created_at: number;
}
