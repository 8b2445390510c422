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
