import { describe, expect, it } from 'vitest';
import { withCircuitBreaker } from '../../src/providers/llm/circuitBreaker.ts';
import type { CircuitState } from '../../src/providers/llm/circuitBreaker.ts';
import type { LlmClient, LlmPartial, LlmRequest, LlmResult } from '../../src/providers/llm/llmClient.ts';
import { LlmError } from '../../src/providers/llm/llmErrors.ts';
import type { LlmErrorCode } from '../../src/providers/llm/llmErrors.ts';

const PARTIAL: LlmPartial = { text: '', usage: null, firstTokenMs: null, durationMs: 5 };

type Outcome = 'ok' | LlmErrorCode | { status: number } | 'callback-error';

/** A client that answers from a script and records every request it was handed. */
function recordingClient() {
  const requests: LlmRequest[] = [];
  const script: Outcome[] = [];
  let preconnects = 0;
  const client: LlmClient = {
    provider: 'openai',
    complete(request) {
      requests.push(request);
      const outcome = script.shift() ?? 'ok';
      if (outcome === 'ok') {
        const result: LlmResult = {
          text: 'fine',
          provider: 'openai',
          model: request.model,
          usage: { inputTokens: 10, outputTokens: 2 },
          firstTokenMs: 1,
          durationMs: 2,
        };
        return Promise.resolve(result);
      }
      if (outcome === 'callback-error') return Promise.reject(new Error('the caller onToken threw'));
      if (typeof outcome === 'object') {
        return Promise.reject(
          new LlmError('ERR_LLM_HTTP', `HTTP ${outcome.status}`, {
            provider: 'openai',
            partial: PARTIAL,
            status: outcome.status,
          }),
        );
      }
      return Promise.reject(new LlmError(outcome, outcome, { provider: 'openai', partial: PARTIAL }));
    },
    preconnect() {
      preconnects += 1;
      return Promise.resolve();
    },
  };
  return {
    client,
    requests,
    script: (...outcomes: Outcome[]) => script.push(...outcomes),
    preconnects: () => preconnects,
  };
}

const REQUEST: LlmRequest = {
  model: 'gpt-4o-mini',
  system: '',
  messages: [{ role: 'user', content: 'hi' }],
  maxOutputTokens: 10,
  timeoutMs: 1000,
};

async function failureOf(promise: Promise<unknown>): Promise<LlmError> {
  const err = await promise.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e,
  );
  return err as LlmError;
}

function setUp(options: { failureThreshold?: number; cooldownMs?: number } = {}) {
  const fake = recordingClient();
  let now = 1_000_000;
  const changes: Array<[CircuitState, CircuitState]> = [];
  const errors: string[] = [];
  const breaker = withCircuitBreaker(fake.client, {
    failureThreshold: options.failureThreshold ?? 3,
    cooldownMs: options.cooldownMs ?? 10_000,
    now: () => now,
    onStateChange: ({ from, to }) => changes.push([from, to]),
    onError: ({ code }) => errors.push(code),
  });
  return {
    fake,
    breaker,
    changes,
    errors,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('withCircuitBreaker', () => {
  it('opens after N consecutive provider failures and then refuses without calling the provider', async () => {
    const { fake, breaker, changes, errors } = setUp();
    fake.script('ERR_LLM_TIMEOUT', 'ERR_LLM_CONNECTION', { status: 503 });

    for (let i = 0; i < 3; i++) await failureOf(breaker.complete(REQUEST));
    expect(breaker.state).toBe('open');
    expect(changes).toEqual([['closed', 'open']]);

    const refused = await failureOf(breaker.complete(REQUEST));
    expect(refused).toBeInstanceOf(LlmError);
    expect(refused.code).toBe('ERR_LLM_CIRCUIT_OPEN');
    expect(refused.retryable).toBe(true);
    // Nothing was sent, so cost accounting must see zero tokens, not an estimate.
    expect(refused.partial.usage).toEqual({ inputTokens: 0, outputTokens: 0 });
    expect(fake.requests).toHaveLength(3);
    expect(errors).toEqual(['ERR_LLM_TIMEOUT', 'ERR_LLM_CONNECTION', 'ERR_LLM_HTTP_503']);
    expect(breaker.snapshot()).toMatchObject({
      provider: 'openai',
      state: 'open',
      consecutiveFailures: 3,
      lastErrorCode: 'ERR_LLM_HTTP_503',
      recentErrors: 3,
      opened: 1,
      retryAt: new Date(1_000_000 + 10_000).toISOString(),
    });
  });

  it('a success in between resets the count: failures must be consecutive', async () => {
    const { fake, breaker } = setUp();
    fake.script('ERR_LLM_TIMEOUT', 'ERR_LLM_TIMEOUT', 'ok', 'ERR_LLM_TIMEOUT', 'ERR_LLM_TIMEOUT');

    await failureOf(breaker.complete(REQUEST));
    await failureOf(breaker.complete(REQUEST));
    await breaker.complete(REQUEST);
    await failureOf(breaker.complete(REQUEST));
    await failureOf(breaker.complete(REQUEST));

    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot().consecutiveFailures).toBe(2);
  });

  it('caller aborts, request-specific refusals and callers’ own errors never open it', async () => {
    const { fake, breaker, errors } = setUp({ failureThreshold: 2 });
    fake.script(
      'ERR_LLM_ABORTED',
      'ERR_LLM_ABORTED',
      'ERR_LLM_ABORTED',
      { status: 400 },
      { status: 422 },
      'callback-error',
      'callback-error',
    );

    for (let i = 0; i < 7; i++) await failureOf(breaker.complete(REQUEST));

    expect(breaker.state).toBe('closed');
    expect(fake.requests).toHaveLength(7);
    // Refusals are still provider errors worth counting; aborts and callers' errors are not.
    expect(errors).toEqual(['ERR_LLM_HTTP_400', 'ERR_LLM_HTTP_422']);
  });

  it('half-opens after the cool-down: one trial request, others refused while it runs', async () => {
    const { fake, breaker, advance, changes } = setUp();
    fake.script('ERR_LLM_TIMEOUT', 'ERR_LLM_TIMEOUT', 'ERR_LLM_TIMEOUT');
    for (let i = 0; i < 3; i++) await failureOf(breaker.complete(REQUEST));

    advance(9_999);
    expect(breaker.state).toBe('open');
    advance(1);
    expect(breaker.state).toBe('half-open');

    const trial = breaker.complete(REQUEST);
    const concurrent = await failureOf(breaker.complete(REQUEST));
    expect(concurrent.code).toBe('ERR_LLM_CIRCUIT_OPEN');
    await trial;

    expect(breaker.state).toBe('closed');
    expect(fake.requests).toHaveLength(4);
    expect(changes).toEqual([
      ['closed', 'open'],
      ['open', 'half-open'],
      ['half-open', 'closed'],
    ]);
    expect(breaker.snapshot().consecutiveFailures).toBe(0);
  });

  it('a failed trial re-opens the circuit for a fresh cool-down', async () => {
    const { fake, breaker, advance } = setUp();
    fake.script('ERR_LLM_TIMEOUT', 'ERR_LLM_TIMEOUT', 'ERR_LLM_TIMEOUT', 'ERR_LLM_CONNECTION');
    for (let i = 0; i < 3; i++) await failureOf(breaker.complete(REQUEST));
    advance(10_000);

    await failureOf(breaker.complete(REQUEST));

    expect(breaker.state).toBe('open');
    expect(breaker.snapshot()).toMatchObject({ opened: 2, lastErrorCode: 'ERR_LLM_CONNECTION' });
    advance(9_999);
    expect((await failureOf(breaker.complete(REQUEST))).code).toBe('ERR_LLM_CIRCUIT_OPEN');
    expect(fake.requests).toHaveLength(4);
  });

  it('an aborted trial gives no verdict: still half-open, and the next request is the trial', async () => {
    const { fake, breaker, advance } = setUp();
    fake.script('ERR_LLM_TIMEOUT', 'ERR_LLM_TIMEOUT', 'ERR_LLM_TIMEOUT', 'ERR_LLM_ABORTED', 'ok');
    for (let i = 0; i < 3; i++) await failureOf(breaker.complete(REQUEST));
    advance(10_000);

    await failureOf(breaker.complete(REQUEST));
    expect(breaker.state).toBe('half-open');
    await breaker.complete(REQUEST);

    expect(breaker.state).toBe('closed');
  });

  it('counts recent errors in a sliding window', async () => {
    const fake = recordingClient();
    let now = 0;
    const breaker = withCircuitBreaker(fake.client, {
      failureThreshold: 100,
      recentWindowMs: 60_000,
      now: () => now,
    });
    fake.script('ERR_LLM_TIMEOUT', 'ERR_LLM_TIMEOUT');
    await failureOf(breaker.complete(REQUEST));
    now = 30_000;
    await failureOf(breaker.complete(REQUEST));

    expect(breaker.snapshot().recentErrors).toBe(2);
    now = 60_001;
    expect(breaker.snapshot().recentErrors).toBe(1);
    expect(breaker.snapshot().lastErrorAt).toBe(new Date(30_000).toISOString());
  });

  it('passes preconnect through, whatever the state', async () => {
    const { fake, breaker } = setUp({ failureThreshold: 1 });
    fake.script('ERR_LLM_TIMEOUT');
    await failureOf(breaker.complete(REQUEST));

    await breaker.preconnect!({ timeoutMs: 1000 });

    expect(fake.preconnects()).toBe(1);
    expect(breaker.state).toBe('open');
  });
});
