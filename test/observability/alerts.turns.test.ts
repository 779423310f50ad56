import { pino } from 'pino';
import { describe, expect, test, vi } from 'vitest';
import { createAlerts } from '../../src/observability/alerts.ts';
import {
  createFallbackRateWatch,
  createTurnAlerts,
  isLlmSlow,
  LLM_SLOW_THRESHOLD_MS,
} from '../../src/observability/turnAlerts.ts';

function clock(start = Date.UTC(2026, 10, 4, 8, 0)) {
  let ms = start;
  return { now: () => new Date(ms), advance: (by: number) => (ms += by) };
}

describe('fallback-rate watch', () => {
  test('raises above the threshold once enough turns were answered, once per window', () => {
    const raise = vi.fn();
    const c = clock();
    const watch = createFallbackRateWatch({
      alerts: { raise },
      thresholdRatio: 0.15,
      minTurns: 20,
      windowMs: 600_000,
      now: c.now,
    });
    // 3 fallbacks in 19 turns is 16 %, but 19 turns is not evidence yet.
    for (let i = 0; i < 3; i++) watch.observe('acme', 'fallback');
    for (let i = 0; i < 16; i++) watch.observe('acme', i % 2 === 0 ? 1 : 2);
    expect(raise).not.toHaveBeenCalled();
    // 3 in 20 is exactly 15 %: not above.
    watch.observe('acme', 3);
    expect(watch.rate('acme')).toEqual({ turns: 20, fallbackTurns: 3, ratio: 0.15 });
    expect(raise).not.toHaveBeenCalled();
    // 4 in 21 is 19 %.
    watch.observe('acme', 'fallback');
    expect(raise).toHaveBeenCalledTimes(1);
    expect(raise).toHaveBeenCalledWith('FALLBACK_RATE_HIGH', {
      companyId: 'acme',
      message: expect.any(String) as string,
      details: { turns: 21, fallbackTurns: 4, ratio: 0.19, thresholdRatio: 0.15, windowMs: 600_000 },
    });
    // Still high: not raised again within the window.
    for (let i = 0; i < 10; i++) watch.observe('acme', 'fallback');
    expect(raise).toHaveBeenCalledTimes(1);
    // Another company has its own window.
    for (let i = 0; i < 20; i++) watch.observe('globex', 2);
    expect(watch.rate('globex').ratio).toBe(0);
    expect(raise).toHaveBeenCalledTimes(1);

    // A window later the old turns have slid out; a new high share raises again.
    c.advance(600_000);
    expect(watch.rate('acme')).toEqual({ turns: 0, fallbackTurns: 0, ratio: null });
    for (let i = 0; i < 19; i++) watch.observe('acme', 'fallback');
    expect(raise).toHaveBeenCalledTimes(1);
    watch.observe('acme', 'fallback');
    expect(raise).toHaveBeenCalledTimes(2);
  });

  test('the window slides: turns older than the window stop counting', () => {
    const raise = vi.fn();
    const c = clock();
    const watch = createFallbackRateWatch({ alerts: { raise }, windowMs: 300_000, now: c.now });
    for (let i = 0; i < 10; i++) watch.observe('acme', 'fallback');
    c.advance(200_000);
    for (let i = 0; i < 10; i++) watch.observe('acme', 1);
    expect(watch.rate('acme')).toMatchObject({ turns: 20, fallbackTurns: 10 });
    c.advance(150_000);
    expect(watch.rate('acme')).toMatchObject({ turns: 10, fallbackTurns: 0 });
    expect(watch.rate('nobody')).toEqual({ turns: 0, fallbackTurns: 0, ratio: null });
  });

  test('defaults: 15 % over at least 20 turns', () => {
    const raise = vi.fn();
    const watch = createFallbackRateWatch({ alerts: { raise } });
    for (let i = 0; i < 16; i++) watch.observe('acme', 1);
    for (let i = 0; i < 4; i++) watch.observe('acme', 'fallback');
    expect(raise).toHaveBeenCalledTimes(1);
  });
});

describe('LLM_SLOW', () => {
  test('a Tier 3 request longer than 3 s is slow', () => {
    expect(LLM_SLOW_THRESHOLD_MS).toBe(3000);
    expect(isLlmSlow({ timings: { tier3Ms: null } })).toBe(false);
    expect(isLlmSlow({ timings: { tier3Ms: 3000 } })).toBe(false);
    expect(isLlmSlow({ timings: { tier3Ms: 3001 } })).toBe(true);
    expect(isLlmSlow({ timings: { tier3Ms: 1500 } }, 1000)).toBe(true);
  });
});

describe('turn alerts', () => {
  const timings = { tier3Ms: null };

  test('fallback turns raise FALLBACK_USED, slow Tier 3 turns LLM_SLOW, both feed the rate watch', () => {
    const raise = vi.fn();
    const turns = createTurnAlerts({ alerts: { raise }, fallbackRate: { minTurns: 2, thresholdRatio: 0.4 } });
    turns.observe({ companyId: 'acme', record: { tier: 2, fallbackKind: null, timings } });
    expect(raise).not.toHaveBeenCalled();
    turns.observe({
      companyId: 'acme',
      record: { tier: 3, fallbackKind: null, timings: { tier3Ms: 4200.4 } },
    });
    expect(raise).toHaveBeenLastCalledWith('LLM_SLOW', {
      companyId: 'acme',
      message: expect.any(String) as string,
      details: { tier3Ms: 4200, thresholdMs: 3000 },
    });
    turns.observe({
      companyId: 'acme',
      record: { tier: 'fallback', fallbackKind: 'technicalIssue', timings },
    });
    turns.observe({ companyId: 'acme', record: { tier: 'fallback', fallbackKind: 'noMatchFound', timings } });
    expect(raise.mock.calls.map(([code]) => code as string)).toEqual([
      'LLM_SLOW',
      'FALLBACK_USED',
      // The watch sees the turn first: 2 fallbacks in 4 turns is above 40 %.
      'FALLBACK_RATE_HIGH',
      'FALLBACK_USED',
    ]);
    expect(raise.mock.calls[1]![1]).toMatchObject({ details: { fallbackKind: 'technicalIssue' } });
    expect(turns.fallbackRate.rate('acme')).toMatchObject({ turns: 4, fallbackTurns: 2 });
  });

  test('through the alerts service: one stored alert per code and company, with the count', async () => {
    const alerts = createAlerts({ db: null, log: pino({ level: 'silent' }) });
    const turns = createTurnAlerts({ alerts });
    for (let i = 0; i < 5; i++) {
      turns.observe({
        companyId: 'acme',
        record: { tier: 'fallback', fallbackKind: 'clarificationNeeded', timings },
      });
    }
    const { alerts: listed } = await alerts.list();
    expect(listed.map((a) => [a.code, a.count])).toEqual([['PRODUCTION_AI_FALLBACK_USED', 5]]);
    await alerts.close();
  });
});
