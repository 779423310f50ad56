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

/**
 * The caller's signal and the request's own timer, merged into the one signal handed to the SDK.
 * It remembers which fired first, because the SDK reports both as the same "user abort".
 */
export interface RequestDeadline {
  readonly signal: AbortSignal;
  /** 'aborted' when the caller's signal fired first, 'timeout' when the timer did, null while neither has. */
  readonly endedBy: 'aborted' | 'timeout' | null;
  /** Stops the timer and detaches from the caller's signal; call it when the request ends. */
  dispose(): void;
}

/** Starts a deadline of `timeoutMs` linked to `callerSignal` (already aborted => ended at once). */
export function startDeadline(callerSignal: AbortSignal | undefined, timeoutMs: number): RequestDeadline {
  const controller = new AbortController();
  let endedBy: 'aborted' | 'timeout' | null = null;
  // Abort without a reason: the SDKs recognise the default AbortError as a cancellation, while a
  // custom reason would surface from fetch as an unrelated error.
  const end = (why: 'aborted' | 'timeout') => {
    if (endedBy !== null) return;
    endedBy = why;
    controller.abort();
  };
  const onCallerAbort = () => end('aborted');
  const timer = setTimeout(() => end('timeout'), timeoutMs);
  if (callerSignal?.aborted === true) end('aborted');
  else callerSignal?.addEventListener('abort', onCallerAbort, { once: true });

  return {
    signal: controller.signal,
    get endedBy() {
      return endedBy;
    },
    dispose() {
      clearTimeout(timer);
      callerSignal?.removeEventListener('abort', onCallerAbort);
    },
  };
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
