/**
 * One error type for every layer. `code` is stable and greppable; `retryable` tells callers whether
 * trying again can help. Vendor errors are translated into AppError at their adapter.
 */
export class AppError extends Error {
  readonly code: string;
  readonly retryable: boolean;

  constructor(code: string, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** A configuration problem: each entry names the file (or source) and the field. */
export class ConfigError extends AppError {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super('ERR_CONFIG_INVALID', `Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export function isAbortError(err: unknown): boolean {
  return (
    err instanceof Error &&
    (err.name === 'AbortError' ||
      err.name === 'APIUserAbortError' ||
      (err as AppError).code === 'ERR_ABORTED' ||
      (err as AppError).code === 'ERR_LLM_ABORTED' ||
      (err as AppError).code === 'ERR_TTS_ABORTED')
  );
}
