/**
 * The errors every LLM adapter throws, and the request deadline they share. Vendor SDK errors are
 * translated into LlmError at the adapter, so callers branch on `code`, never on vendor classes.
 */
import { AppError } from '../../errors.ts';
import type { LlmPartial } from './llmClient.ts';

export type LlmErrorCode =
  /** The caller's signal aborted the request. */
  | 'ERR_LLM_ABORTED'
  /** The request ran past its `timeoutMs`; the stream was closed. */
  | 'ERR_LLM_TIMEOUT'
  /** The provider answered with an error status (`status`), or reported an error inside the stream. */
  | 'ERR_LLM_HTTP'
  /** The connection failed or was cut before the answer was complete. */
  | 'ERR_LLM_CONNECTION'
  /** The answer was not a valid stream: malformed events, or it ended without a stop marker. */
  | 'ERR_LLM_BAD_RESPONSE'
  /** The provider's circuit breaker is open: the request was refused without being sent. */
  | 'ERR_LLM_CIRCUIT_OPEN';

export type LlmProvider = 'openai' | 'anthropic';

/** An LLM request that ended without a full answer. */
export class LlmError extends AppError {
  declare readonly code: LlmErrorCode;
  readonly provider: LlmProvider;
  /**
   * What had arrived before the end: text so far and timings. `usage` is the provider's final usage
   * or null (the usual case when cut short): callers then estimate from the prompt and `text`.
   */
  readonly partial: LlmPartial;
  /** The HTTP status for ERR_LLM_HTTP when there was one; otherwise null. */
  readonly status: number | null;

  constructor(
    code: LlmErrorCode,
    message: string,
    options: {
      provider: LlmProvider;
      partial: LlmPartial;
      status?: number | null;
      retryable?: boolean;
      cause?: unknown;
    },
  ) {
    super(code, message, {
      ...(options.retryable === undefined ? {} : { retryable: options.retryable }),
      ...(options.cause === undefined ? {} : { cause: options.cause }),
    });
    this.name = 'LlmError';
    this.provider = options.provider;
    this.partial = options.partial;
    this.status = options.status ?? null;
  }
}

export function isLlmError(err: unknown): err is LlmError {
  return err instanceof LlmError;
}

/** Status codes worth retrying (possibly on another provider): throttling and server-side trouble. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** ERR_LLM_HTTP for an error status, retryable for 408/429/5xx. */
export function llmHttpError(
  provider: LlmProvider,
  status: number,
  message: string,
  partial: LlmPartial,
  cause?: unknown,
): LlmError {
  return new LlmError('ERR_LLM_HTTP', `${provider} answered HTTP ${status}: ${message}`, {
    provider,
    partial,
    status,
    retryable: isRetryableStatus(status),
    cause,
  });
}

/** The error for a request its deadline ended: ERR_LLM_ABORTED (not retryable) or ERR_LLM_TIMEOUT (retryable). */
export function endedEarlyError(
  endedBy: 'aborted' | 'timeout',
  provider: LlmProvider,
  partial: LlmPartial,
  timeoutMs: number,
): LlmError {
  return endedBy === 'aborted'
    ? new LlmError('ERR_LLM_ABORTED', `${provider} request aborted by the caller`, { provider, partial })
    : new LlmError('ERR_LLM_TIMEOUT', `${provider} request exceeded ${timeoutMs} ms`, {
        provider,
        partial,
        retryable: true,
      });
}
