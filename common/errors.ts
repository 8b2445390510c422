/**
 * Errors that know how they should be reported: an HTTP status and a stable code for the
 * REST API, and whether retrying the same operation can succeed (for agents and clients).
 */
export class TetherError extends Error {
  readonly code: string;
  readonly status: number;
  readonly retryable: boolean;

  constructor(code: string, message: string, opts: { status?: number; retryable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'TetherError';
    this.code = code;
    this.status = opts.status ?? 500;
    this.retryable = opts.retryable ?? false;
  }
}

export const badRequest = (message: string, code = 'invalid_request') => new TetherError(code, message, { status: 400 });
export const unauthorized = (message: string, code = 'unauthorized') => new TetherError(code, message, { status: 401 });
export const forbidden = (message: string, code = 'forbidden') => new TetherError(code, message, { status: 403 });
export const notFound = (message: string, code = 'not_found') => new TetherError(code, message, { status: 404 });
export const conflict = (message: string, code = 'conflict') => new TetherError(code, message, { status: 409 });
export const unavailable = (message: string, code = 'unavailable') =>
  new TetherError(code, message, { status: 503, retryable: true });

/** The JSON body of every API error. */
export interface ErrorBody {
  error: { code: string; message: string };
}

export function errorBody(code: string, message: string): ErrorBody {
  return { error: { code, message } };
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The codes an agent (cluster or node) reports in a failed command's `error.code`, each with
 * whether running the command again can succeed (Temporal-style: permanent vs transient). The
 * agent reports `retryable` from this table, and the control plane requeues a failed attempt only
 * when it is retryable (up to the command's `maxAttempts`); a permanent failure ends the command
 * at once. `docs/cluster-agent.md` lists them for users.
 */
export const COMMAND_ERRORS = {
  // ---- permanent: the command itself is wrong; the same input fails the same way
  /** The agent does not run this command type (a node command sent to a cluster agent, ...). */
  unsupported_command: { retryable: false },
  /** The spec does not pass the agent's own validation. */
  invalid_spec: { retryable: false },
  /** Helm values or tofu vars that cannot be used (forbidden keys, too deep). */
  invalid_values: { retryable: false },
  /** Manifests that do not parse, or objects without apiVersion/kind/name. */
  invalid_manifest: { retryable: false },
  /** A path in a repository that leaves it, or is not what the spec says (file/folder). */
  invalid_path: { retryable: false },
  path_not_found: { retryable: false },
  /** A repository or ref that does not exist (or is not readable with the agent's access). */
  git_not_found: { retryable: false },
  /** A kind the cluster does not serve (a typo, a CRD not installed). */
  unknown_kind: { retryable: false },
  /** The API server refused a request for what it is (schema, validation, admission, RBAC: 400/403/404/422). */
  kube_rejected: { retryable: false },
  /** helm refused the chart or its values: template, render, schema or manifest errors. */
  helm_invalid: { retryable: false },
  /** tofu refused the module or its variables: configuration, validation, unknown provider. */
  tofu_invalid: { retryable: false },
  secret_not_found: { retryable: false },
  secret_key_not_found: { retryable: false },
  output_not_found: { retryable: false },
  /** Node agent: a preflight check failed (the host must be fixed first). */
  preflight_failed: { retryable: false },
  /** Node agent: the node's VPN is not managed by the agent. */
  vpn_not_managed: { retryable: false },
  /** An unexpected error in the agent itself (a bug): retrying would repeat it. */
  executor_error: { retryable: false },
  // ---- transient: the environment failed; a later attempt can succeed
  /** A git fetch that failed for another reason than a missing repository or ref (network, server). */
  git_error: { retryable: true },
  /** The Kubernetes API failed (network, 5xx, 429, conflict) while reading or writing. */
  kube_error: { retryable: true },
  /** Applying an object failed for a reason that can pass (5xx, 429, a conflict, a timeout). */
  apply_failed: { retryable: true },
  delete_failed: { retryable: true },
  /** helm failed for another reason than its input (cluster unreachable, a release busy, a timeout). */
  helm_failed: { retryable: true },
  /** tofu failed for another reason than its input (a provider or registry unreachable, a state lock). */
  tofu_failed: { retryable: true },
  /** Node agent: an install step failed. */
  install_failed: { retryable: true },
  vpn_sync_failed: { retryable: true },
} as const satisfies Record<string, { retryable: boolean }>;

export type CommandErrorCode = keyof typeof COMMAND_ERRORS;

export function isCommandErrorCode(code: string): code is CommandErrorCode {
  return Object.hasOwn(COMMAND_ERRORS, code);
}

/** A command failure: its code is one of {@link COMMAND_ERRORS}, and so is whether it is retryable. */
export class CommandFailure extends TetherError {
  declare readonly code: CommandErrorCode;
  constructor(code: CommandErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(code, message, { retryable: COMMAND_ERRORS[code].retryable, ...(opts.cause === undefined ? {} : { cause: opts.cause }) });
    this.name = 'CommandFailure';
  }
}

/**
 * The code and retryability an agent reports for an error thrown while running a command: a
 * {@link CommandFailure}'s own, or `executor_error` (permanent) for anything else.
 */
export function classifyFailure(err: unknown): { code: CommandErrorCode; retryable: boolean } {
  if (err instanceof TetherError && isCommandErrorCode(err.code)) return { code: err.code, retryable: COMMAND_ERRORS[err.code].retryable };
  return { code: 'executor_error', retryable: false };
}
