import { readFile } from 'node:fs/promises';
import { beforeAll, describe, expect, test } from 'vitest';
import type { CompanyConfig } from '../../src/config/companyConfig.ts';
import { parseCompany } from '../../src/config/companyConfig.ts';
import { createMemoryBudgetStore, dailyWarmupKey, toMicros } from '../../src/cost/budgets.ts';
import { DEMO_FILES } from '../../src/store/configStore.ts';
import { createWarmupGate, MIN_SAMPLES_CATEGORY, MIN_SAMPLES_COMPANY } from '../../src/warmup/warmupGate.ts';
import { createMemoryWarmupStats } from '../../src/warmup/warmupStats.ts';

let base: CompanyConfig;
const NOW = new Date('2026-11-21T15:00:00Z');

beforeAll(async () => {
  base = parseCompany(JSON.parse(await readFile(DEMO_FILES[0]!, 'utf8')), 'demo');
});

function setup(warmup: Partial<CompanyConfig['warmup']> = {}) {
  const company = { ...base, warmup: { ...base.warmup, ...warmup } } as CompanyConfig;
  const budgets = createMemoryBudgetStore();
  const stats = createMemoryWarmupStats();
  const gate = createWarmupGate({ budgets, stats, now: () => NOW });
  const decide = (tier1Confidence: number, category: string | null) =>
    gate({ company, tier1Confidence, category });
  return { company, budgets, stats, decide };
}

describe('the warmup decision', () => {
  test('warms when Tier 1 is below the threshold, and says why', async () => {
    const { decide } = setup({ confidenceThreshold: 0.75 });
    expect(await decide(0.5, 'repair')).toEqual({ warm: true, reason: 'tier1-confidence-below-threshold' });
    expect(await decide(0.8, 'repair')).toEqual({ warm: false, reason: 'tier1-confidence-above-threshold' });
  });

  test('always-categories warm regardless of confidence; never-categories never do', async () => {
    const { decide } = setup({ alwaysWarmupCategories: ['emergency'], neverWarmupCategories: ['greeting'] });
    expect(await decide(0.99, 'emergency')).toEqual({ warm: true, reason: 'always-warmup-category' });
    expect(await decide(0.1, 'greeting')).toEqual({ warm: false, reason: 'never-warmup-category' });
  });

  test('disabled warmup never warms', async () => {
    const { decide } = setup({ enabled: false });
    expect(await decide(0, null)).toEqual({ warm: false, reason: 'warmup-disabled' });
  });

  test('stops for the day once the daily budget is spent (UTC day)', async () => {
    const { decide, budgets, company } = setup({ dailyBudgetUsd: 1 });
    const r = await budgets.reserve(dailyWarmupKey(company.id, NOW), toMicros(1), toMicros(1));
    await budgets.settle(r!, toMicros(1));
    expect(await decide(0.1, 'repair')).toEqual({ warm: false, reason: 'daily-budget-exhausted' });
    // Tomorrow's budget is untouched.
    expect(dailyWarmupKey(company.id, new Date('2026-11-22T00:00:01Z'))).not.toBe(
      dailyWarmupKey(company.id, NOW),
    );
  });

  test('auto-disables when the 7-day hit rate falls under the minimum, but only on enough evidence', async () => {
    const { decide, stats, company } = setup({ minimumHitRate: 0.3, enablePatternLearning: false });
    for (let i = 0; i < MIN_SAMPLES_COMPANY - 1; i++) stats.recordTriggered(company.id, 'repair', NOW);
    expect((await decide(0.1, 'repair')).warm).toBe(true);
    stats.recordTriggered(company.id, 'repair', NOW);
    expect(await decide(0.1, 'repair')).toEqual({ warm: false, reason: 'auto-disabled-low-hit-rate' });
    for (let i = 0; i < 10; i++) stats.recordUsed(company.id, 'repair', NOW);
    expect((await decide(0.1, 'repair')).warm).toBe(true);
  });

  test('statistics older than 7 days no longer count', async () => {
    const { decide, stats, company } = setup({ minimumHitRate: 0.3 });
    const old = new Date(NOW.getTime() - 8 * 86_400_000);
    for (let i = 0; i < 50; i++) stats.recordTriggered(company.id, 'repair', old);
    expect((await decide(0.1, 'repair')).warm).toBe(true);
  });

  test('pattern learning stops a category with a poor hit rate while others keep warming', async () => {
    const { decide, stats, company } = setup({ minimumHitRate: 0.3, enablePatternLearning: true });
    for (let i = 0; i < MIN_SAMPLES_CATEGORY; i++) stats.recordTriggered(company.id, 'pricing', NOW);
    for (let i = 0; i < MIN_SAMPLES_COMPANY; i++) {
      stats.recordTriggered(company.id, 'repair', NOW);
      stats.recordUsed(company.id, 'repair', NOW);
    }
    expect(await decide(0.1, 'pricing')).toEqual({ warm: false, reason: 'category-low-hit-rate' });
    expect((await decide(0.1, 'repair')).warm).toBe(true);
  });
});
