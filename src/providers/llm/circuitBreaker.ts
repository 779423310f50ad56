/**
 * A circuit breaker around one LLM provider's client. When the provider keeps failing, every turn
 * would otherwise wait out its timeout before the caller hears a fallback line; an open circuit
 * refuses at once with ERR_LLM_CIRCUIT_OPEN (the call machine turns that into a fallback line, and
 * LLM capture/detect into the rules' answer), then lets one trial request through after a cool-down.
 *
 *   closed ──N consecutive failures──▶ open ──cool-down──▶ half-open ──trial succeeds──▶ closed
 *                                       ▲                      │
 *                                       └────trial fails───────┘
 *
 * Caller aborts are not failures: a cancelled warmup is the warmup working as designed. Nor are
 * refusals of one request (HTTP 400, 413, 422): the provider answered, so it is up.
 */
import { isAbortError } from '../../errors.ts';
import type { LlmClient, LlmPartial, LlmRequest, LlmResult } from './llmClient.ts';
import { LlmError, isLlmError } from './llmErrors.ts';
import type { LlmProvider } from './llmErrors.ts';

export type CircuitState = 'closed' | 'open' | 'half-open';

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit. Default 5. */
  readonly failureThreshold?: number;
  /** How long an open circuit refuses requests before letting one trial through. Default 30 000. */
  readonly cooldownMs?: number;
  /** The window of `recentErrors` in snapshots. Default 300 000 (five minutes). */
  readonly recentWindowMs?: number;
  /** Clock in epoch milliseconds (tests). */
  readonly now?: () => number;
  /** Every provider error, counted against the circuit or not (caller aborts excluded). */
  readonly onError?: (error: { readonly provider: LlmProvider; readonly code: string }) => void;
  readonly onStateChange?: (change: {
    readonly provider: LlmProvider;
    readonly from: CircuitState;
    readonly to: CircuitState;
  }) => void;
}

/** A breaker's state and recent history, for metrics and `GET /status`. */
export interface CircuitSnapshot {
  readonly provider: LlmProvider;
  readonly state: CircuitState;
  readonly consecutiveFailures: number;
  /** When an open circuit lets its trial request through (ISO time); null unless open. */
  readonly retryAt: string | null;
  /** The last provider error's code (`ERR_LLM_HTTP_503`, `ERR_LLM_TIMEOUT`, …), whenever it was. */
  readonly lastErrorCode: string | null;
  readonly lastErrorAt: string | null;
  /** Provider errors in the last `recentWindowMs`. */
  readonly recentErrors: number;
  readonly recentWindowMs: number;
  /** Times the circuit has opened since the process started. */
  readonly opened: number;
}

/** An LlmClient behind a circuit breaker; `state` and `snapshot()` say how the provider is doing. */
export interface CircuitBreakerLlm extends LlmClient {
  readonly state: CircuitState;
  snapshot(): CircuitSnapshot;
}

/** Request-specific refusals: the provider answered, so they say nothing against its health. */
const REQUEST_FAULT_STATUSES = new Set([400, 413, 422]);

/** Cost accounting reads `partial.usage`: a refused request spent nothing, exactly. */
const NOTHING_SENT: LlmPartial = {
  text: '',
  usage: { inputTokens: 0, outputTokens: 0 },
  firstTokenMs: null,
  durationMs: 0,
};

/** The error's code as metrics and /status show it: HTTP errors carry their status. */
export function providerErrorCode(err: LlmError): string {
  return err.code === 'ERR_LLM_HTTP' && err.status !== null ? `ERR_LLM_HTTP_${err.status}` : err.code;
}

type Verdict = 'failure' | 'alive' | 'none';

function verdictOf(err: unknown): Verdict {
  // Aborts, and errors that are not the provider's (a caller's own onToken callback throwing).
  if (isAbortError(err) || !isLlmError(err) || err.code === 'ERR_LLM_CIRCUIT_OPEN') return 'none';
  if (err.code === 'ERR_LLM_HTTP' && err.status !== null && REQUEST_FAULT_STATUSES.has(err.status))
    return 'alive';
  return 'failure';
}

/** Wraps `client` in a circuit breaker (one per provider, shared by every call in the process). */
export function withCircuitBreaker(
  client: LlmClient,
  options: CircuitBreakerOptions = {},
): CircuitBreakerLlm {
  const provider = client.provider;
  const threshold = Math.max(1, options.failureThreshold ?? 5);
  const cooldownMs = options.cooldownMs ?? 30_000;
  const windowMs = options.recentWindowMs ?? 300_000;
  const now = options.now ?? Date.now;

  let state: CircuitState = 'closed';
  let consecutive = 0;
  let openedAt = 0;
  let opened = 0;
  let trialInFlight = false;
  let lastError: { code: string; at: number } | null = null;
  // Times of recent errors, oldest first; pruned to the window on every write and read.
  const recent: number[] = [];

  const prune = (t: number) => {
    while (recent.length > 0 && recent[0]! <= t - windowMs) recent.shift();
  };

  const moveTo = (to: CircuitState) => {
    if (to === state) return;
    const from = state;
    state = to;
    if (to === 'open') {
      openedAt = now();
      opened += 1;
    }
    if (to === 'closed') consecutive = 0;
    options.onStateChange?.({ provider, from, to });
  };

  /** The state now: an open circuit whose cool-down has passed is half-open. */
  const current = (): CircuitState => {
    if (state === 'open' && now() - openedAt >= cooldownMs) moveTo('half-open');
    return state;
  };

  const noteError = (err: LlmError) => {
    const t = now();
    const code = providerErrorCode(err);
    lastError = { code, at: t };
    recent.push(t);
    prune(t);
    options.onError?.({ provider, code });
  };

  const refusal = () =>
    new LlmError(
      'ERR_LLM_CIRCUIT_OPEN',
      `${provider} circuit is open after ${consecutive} consecutive failures; the request was not sent`,
      { provider, partial: NOTHING_SENT, retryable: true },
    );

  const preconnect = client.preconnect?.bind(client);
  return {
    provider,
    // A preconnect says nothing about answering calls: it neither opens nor closes the circuit.
    ...(preconnect === undefined ? {} : { preconnect }),
    get state() {
      return current();
    },
    snapshot() {
      const s = current();
      const t = now();
      prune(t);
      return {
        provider,
        state: s,
        consecutiveFailures: consecutive,
        retryAt: s === 'open' ? new Date(openedAt + cooldownMs).toISOString() : null,
        lastErrorCode: lastError?.code ?? null,
        lastErrorAt: lastError === null ? null : new Date(lastError.at).toISOString(),
        recentErrors: recent.length,
        recentWindowMs: windowMs,
        opened,
      };
    },
    async complete(request: LlmRequest): Promise<LlmResult> {
      const s = current();
      if (s === 'open' || (s === 'half-open' && trialInFlight)) throw refusal();
      const trial = s === 'half-open';
      if (trial) trialInFlight = true;
      try {
        const result = await client.complete(request);
        // Any answer proves the provider is up, even one started before the circuit opened.
        consecutive = 0;
        moveTo('closed');
        return result;
      } catch (err) {
        const verdict = verdictOf(err);
        if (verdict !== 'none') noteError(err as LlmError);
        if (verdict === 'alive') {
          consecutive = 0;
          moveTo('closed');
        } else if (verdict === 'failure') {
          consecutive += 1;
          // A failed trial re-opens the circuit for a fresh cool-down.
          if (trial || (state === 'closed' && consecutive >= threshold)) moveTo('open');
        }
        throw err;
      } finally {
        if (trial) trialInFlight = false;
      }
    },
  };
}
