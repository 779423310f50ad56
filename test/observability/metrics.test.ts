import { describe, expect, test } from 'vitest';
import type { TurnRecord } from '../../machines/types.ts';
import { newCostEvent } from '../../src/cost/costEvent.ts';
import { createMetrics, understandingMs } from '../../src/observability/metrics.ts';

function record(patch: Partial<TurnRecord> = {}, timings: Partial<TurnRecord['timings']> = {}): TurnRecord {
  return {
    turn: 1,
    utterance: 'my sink is clogged, call me at 555 201 3344',
    slots: { callbackNumber: '+15552013344' },
    situation: null,
    reconciled: false,
    reconcileReason: null,
    tier: 1,
    confidence: 0.9,
    tier1Confidence: 0.9,
    tier2Confidence: null,
    category: 'repair',
    scenarioId: 'repair-clogged-drain',
    warmup: 'none',
    warmupReason: null,
    fallbackKind: null,
    reply: 'We can clear that drain today.',
    next: 'listen',
    timings: {
      captureMs: 150,
      detectMs: 120,
      redetectMs: null,
      tier1Ms: 0.05,
      warmupGateMs: null,
      tier2Ms: null,
      tier3Ms: null,
      tier3FirstTokenMs: null,
      fallbackMs: null,
      providerMs: 150,
      ...timings,
    },
    ...patch,
  };
}

/** The value of one sample line, e.g. `switchboard_turns_total{tier="1"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

function setUp(inOrder = false) {
  const metrics = createMetrics({ defaultMetrics: false });
  let live = 0;
  metrics.track({
    liveCalls: () => live,
    circuits: () => [
      {
        provider: 'openai',
        state: 'open',
        consecutiveFailures: 5,
        retryAt: null,
        lastErrorCode: 'ERR_LLM_TIMEOUT',
        lastErrorAt: null,
        recentErrors: 5,
        recentWindowMs: 300_000,
        opened: 1,
      },
    ],
    ready: () => true,
    understandsInOrder: () => inOrder,
  });
  return { metrics, setLive: (n: number) => (live = n) };
}

describe('metrics', () => {
  test('a turn lands in its stage histograms, latency by tier and first/later, and the counters', async () => {
    const { metrics } = setUp();
    metrics.observeTurn({ callId: 'call-1', companyId: 'c', record: record(), latencyMs: 152, engineMs: 2 });
    metrics.observeTurn({
      callId: 'call-2',
      companyId: 'c',
      record: record(
        {
          turn: 2,
          tier: 'fallback',
          fallbackKind: 'technicalIssue',
          warmup: 'skipped',
          warmupReason: 'daily-budget-exhausted',
          reconciled: true,
          reconcileReason: 'unsure-detect',
        },
        { redetectMs: 140, tier2Ms: 100, fallbackMs: 0.1 },
      ),
      latencyMs: 400,
      engineMs: 3,
    });

    const text = await metrics.render();
    expect(sample(text, 'switchboard_turn_stage_duration_ms_count{stage="capture"}')).toBe(2);
    expect(sample(text, 'switchboard_turn_stage_duration_ms_count{stage="tier2"}')).toBe(1);
    expect(sample(text, 'switchboard_turn_stage_duration_ms_count{stage="tier3"}')).toBeUndefined();
    // Understanding = the slower of capture and detect, plus the re-detect.
    expect(sample(text, 'switchboard_turn_stage_duration_ms_sum{stage="understanding"}')).toBe(150 + 290);
    expect(sample(text, 'switchboard_turn_latency_ms_count{tier="1",turn="first"}')).toBe(1);
    expect(sample(text, 'switchboard_turn_latency_ms_count{tier="fallback",turn="later"}')).toBe(1);
    expect(sample(text, 'switchboard_turn_latency_ms_bucket{le="200",tier="1",turn="first"}')).toBe(1);
    expect(sample(text, 'switchboard_turns_total{tier="1"}')).toBe(1);
    expect(sample(text, 'switchboard_turns_total{tier="fallback"}')).toBe(1);
    expect(sample(text, 'switchboard_fallbacks_total{kind="technicalIssue"}')).toBe(1);
    expect(sample(text, 'switchboard_reconciles_total{reason="unsure-detect"}')).toBe(1);
    expect(sample(text, 'switchboard_warmup_outcomes_total{outcome="none"}')).toBe(1);
    expect(sample(text, 'switchboard_warmup_skips_total{reason="daily-budget-exhausted"}')).toBe(1);
    // Nothing a caller said or is can reach the exposition.
    expect(text).not.toMatch(/clogged|3344|drain today/);
  });

  test('in-order understanding adds capture and detect', () => {
    const t = { captureMs: 150, detectMs: 120, redetectMs: null };
    expect(understandingMs(t, true)).toBe(270);
    expect(understandingMs(t, false)).toBe(150);
    expect(understandingMs({ captureMs: null, detectMs: null, redetectMs: null }, false)).toBeNull();
  });

  test('cost events: spend by purpose, provider and model; unknown costs counted apart', async () => {
    const { metrics } = setUp();
    const base = { companyId: 'c', provider: 'openai', model: 'gpt-4o-mini' } as const;
    metrics.observeCost(newCostEvent({ ...base, purpose: 'warmup', action: 'triggered' }));
    metrics.observeCost(newCostEvent({ ...base, purpose: 'warmup', action: 'completed', costUsd: 0.0002 }));
    metrics.observeCost(newCostEvent({ ...base, purpose: 'tier3', action: 'cancelled', costUsd: 0.0001 }));
    metrics.observeCost(
      newCostEvent({ ...base, model: 'mystery-1', purpose: 'tier3', action: 'completed', costUsd: null }),
    );

    const text = await metrics.render();
    expect(
      sample(text, 'switchboard_cost_usd_total{purpose="warmup",provider="openai",model="gpt-4o-mini"}'),
    ).toBeCloseTo(0.0002, 10);
    expect(
      sample(text, 'switchboard_cost_usd_total{purpose="tier3",provider="openai",model="gpt-4o-mini"}'),
    ).toBeCloseTo(0.0001, 10);
    expect(
      sample(
        text,
        'switchboard_cost_unknown_events_total{purpose="tier3",provider="openai",model="mystery-1"}',
      ),
    ).toBe(1);
    expect(
      sample(text, 'switchboard_cost_events_total{purpose="warmup",action="triggered",provider="openai"}'),
    ).toBe(1);
  });

  test('live calls, circuit state, readiness and provider errors are read or counted', async () => {
    const { metrics, setLive } = setUp();
    setLive(7);
    metrics.observeProviderError({ provider: 'openai', kind: 'llm', code: 'ERR_LLM_HTTP_503' });
    metrics.observeCircuitChange({ provider: 'openai', to: 'open' });
    metrics.observeCircuitChange({ provider: 'openai', to: 'half-open' });
    metrics.observeStartupWarmup(42.5);

    const text = await metrics.render();
    expect(sample(text, 'switchboard_live_calls')).toBe(7);
    expect(sample(text, 'switchboard_circuit_state{provider="openai"}')).toBe(2);
    expect(sample(text, 'switchboard_circuit_opens_total{provider="openai"}')).toBe(1);
    expect(
      sample(text, 'switchboard_provider_errors_total{provider="openai",kind="llm",code="ERR_LLM_HTTP_503"}'),
    ).toBe(1);
    expect(sample(text, 'switchboard_ready')).toBe(1);
    expect(sample(text, 'switchboard_startup_warmup_duration_ms')).toBe(42.5);
  });

  test('each app owns its registry: two side by side do not collide or share counts', async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.observeTurn({ callId: 'call-1', companyId: 'c', record: record(), latencyMs: 10, engineMs: 1 });

    const [textA, textB] = await Promise.all([a.render(), b.render()]);
    expect(sample(textA, 'switchboard_turns_total{tier="1"}')).toBe(1);
    expect(sample(textB, 'switchboard_turns_total{tier="1"}')).toBeUndefined();
    // Default process metrics, event-loop delay among them.
    expect(textA).toMatch(/^nodejs_eventloop_lag_p99_seconds /m);
    expect(a.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
  });
});
