/**
 * The caller's signal and a request's own timers, merged into the one signal handed to the HTTP
 * client. It remembers which fired first, because the request reports both as the same abort.
 * Shared by the LLM, TTS and embeddings adapters.
 */

export interface RequestDeadline {
  readonly signal: AbortSignal;
  /** 'aborted' when the caller's signal fired first, 'timeout' when a timer did, null while neither has. */
  readonly endedBy: 'aborted' | 'timeout' | null;
  /** Stops the first-byte timer (a no-op without one). */
  firstByteArrived(): void;
  /** Closes the request without a verdict: the consumer left early (no-op once ended). */
  abort(): void;
  /** Stops the timers and detaches from the caller's signal; call it when the request ends. */
  dispose(): void;
}

/**
 * Starts a deadline of `timeoutMs` for the whole request, and of `firstByteTimeoutMs` for its first
 * byte when given, linked to `callerSignal` (already aborted => ended at once).
 */
export function startDeadline(
  callerSignal: AbortSignal | undefined,
  timeoutMs: number,
  firstByteTimeoutMs?: number,
): RequestDeadline {
  const controller = new AbortController();
  let endedBy: 'aborted' | 'timeout' | null = null;
  // Abort without a reason: the default AbortError is what every consumer recognises as a
  // cancellation; a custom reason would surface as an unrelated error.
  const end = (why: 'aborted' | 'timeout') => {
    if (endedBy !== null) return;
    endedBy = why;
    controller.abort();
  };
  const onCallerAbort = () => end('aborted');
  let firstByteTimer: NodeJS.Timeout | null =
    firstByteTimeoutMs === undefined ? null : setTimeout(() => end('timeout'), firstByteTimeoutMs);
  const totalTimer = setTimeout(() => end('timeout'), timeoutMs);
  if (callerSignal?.aborted === true) end('aborted');
  else callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
  const clearFirstByte = () => {
    if (firstByteTimer !== null) clearTimeout(firstByteTimer);
    firstByteTimer = null;
  };

  return {
    signal: controller.signal,
    get endedBy() {
      return endedBy;
    },
    firstByteArrived: clearFirstByte,
    abort() {
      if (endedBy === null) controller.abort();
    },
    dispose() {
      clearFirstByte();
      clearTimeout(totalTimer);
      callerSignal?.removeEventListener('abort', onCallerAbort);
    },
  };
}
