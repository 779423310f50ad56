import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import type { CompanyConfig } from '../../src/config/companyConfig.ts';
import { createMemoryBudgetStore } from '../../src/cost/budgets.ts';
import {
  AUTO_DISABLED_REASON,
  DEFAULT_VALUE_PER_SECOND_SAVED_USD,
  tierDistribution,
  utcPeriod,
  warmupAnalytics,
} from '../../src/cost/warmupAnalytics.ts';
import { AppError } from '../../src/errors.ts';
import {
  createWarmupGate,
  HIT_RATE_WINDOW_DAYS,
  MIN_SAMPLES_CATEGORY,
  MIN_SAMPLES_COMPANY,
} from '../../src/warmup/warmupGate.ts';
import { createMemoryWarmupStats } from '../../src/warmup/warmupStats.ts';
import { demoCompany } from '../fixtures/configs.ts';
import { openTestDb } from '../store/dbForTest.ts';
import type { TestDb } from '../store/dbForTest.ts';

let t: TestDb;

// PGlite starts (WASM) and migrates in-process: seconds on a loaded machine, more than the default hook timeout.
beforeAll(async () => {
  t = await openTestDb();
}, 60_000);

afterAll(async () => {
  await t?.dispose();
});

beforeEach(async () => {
  await t.db.exec('DELETE FROM cost_events; DELETE FROM turns;');
});

const CO = 'riverside-plumbing';
/** Mid-afternoon UTC; with days = 7 the period is 2026-03-04T00:00Z (incl.) to 2026-03-11T00:00Z (excl.). */
const NOW = new Date('2026-03-10T15:00:00.000Z');
const FROM = '2026-03-04T00:00:00.000Z';
const TO = '2026-03-11T00:00:00.000Z';
const DAY = 86_400_000;
const hoursAgo = (h: number) => new Date(NOW.getTime() - h * 3_600_000);

interface EventFixture {
  action: 'triggered' | 'used' | 'cancelled' | 'failed' | 'completed';
  at?: Date | string;
  companyId?: string;
  purpose?: string;
  costUsd?: number | null;
  durationMs?: number;
  timeSavedMs?: number | null;
  estimated?: boolean;
}

/** One INSERT for the lot: a row per statement is slow on a loaded machine's PGlite. */
async function insertRows(table: string, columns: string, casts: readonly string[], rows: unknown[][]) {
  if (rows.length === 0) return;
  const values = rows.map(
    (_, r) => `(${casts.map((cast, c) => `$${r * casts.length + c + 1}${cast}`).join(', ')})`,
  );
  await t.db.query(`INSERT INTO ${table} (${columns}) VALUES ${values.join(', ')}`, rows.flat());
}

async function events(...list: EventFixture[]): Promise<void> {
  await insertRows(
    'cost_events',
    'id, at, company_id, call_id, turn, purpose, tier, action, provider, model, duration_ms, cost_usd, estimated, price_version, time_saved_ms',
    [
      '::uuid',
      '::timestamptz',
      '',
      '',
      '::integer',
      '',
      '::smallint',
      '',
      '',
      '',
      '::integer',
      '::numeric',
      '::boolean',
      '',
      '::integer',
    ],
    list.map((e) => [
      randomUUID(),
      new Date(e.at ?? hoursAgo(1)).toISOString(),
      e.companyId ?? CO,
      'call-1',
      1,
      e.purpose ?? 'warmup',
      3,
      e.action,
      'openai',
      'gpt-4o-mini',
      e.durationMs ?? 0,
      e.costUsd === undefined ? 0 : e.costUsd,
      e.estimated ?? false,
      'test',
      e.timeSavedMs ?? null,
    ]),
  );
}

const times = <T>(n: number, make: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => make(i));

interface TurnFixture {
  at?: Date | string;
  companyId?: string;
  category?: string | null;
  tier?: '1' | '2' | '3' | 'fallback';
  warmup?: 'none' | 'skipped' | 'cancelled' | 'unused' | 'used' | 'failed';
  warmupReason?: string | null;
  fallbackKind?: string | null;
  reconcileReason?: string | null;
  redetectMs?: number | null;
}

let turnNo = 0;
async function turns(...list: TurnFixture[]): Promise<void> {
  await insertRows(
    'turns',
    'call_id, turn, company_id, transcript, category, tier, confidence, warmup, warmup_reason, reconcile_reason, fallback_kind, next_action, timings, reply, latency_ms, created_at',
    [
      '',
      '::integer',
      '',
      '',
      '',
      '',
      '::float8',
      '',
      '',
      '',
      '',
      '',
      '::jsonb',
      '',
      '::float8',
      '::timestamptz',
    ],
    list.map((r) => [
      'call-t',
      ++turnNo,
      r.companyId ?? CO,
      'words',
      r.category === undefined ? 'drain' : r.category,
      r.tier ?? '2',
      0.5,
      r.warmup ?? 'none',
      r.warmupReason ?? null,
      r.reconcileReason ?? null,
      r.fallbackKind ?? null,
      'listen',
      JSON.stringify({ redetectMs: r.redetectMs ?? null, tier3Ms: null, providerMs: 0 }),
      'reply',
      100,
      new Date(r.at ?? hoursAgo(1)).toISOString(),
    ]),
  );
}

describe('the period', () => {
  test('whole UTC days ending with the day of now', () => {
    expect(utcPeriod(7, NOW)).toEqual({ days: 7, from: FROM, to: TO });
    expect(utcPeriod(1, new Date('2026-03-10T00:00:00.000Z'))).toEqual({
      days: 1,
      from: '2026-03-10T00:00:00.000Z',
      to: '2026-03-11T00:00:00.000Z',
    });
  });

  test('days must be a whole number from 1 to 366', async () => {
    for (const days of [0, -1, 1.5, 367, Number.NaN]) {
      await expect(warmupAnalytics(t.db, { companyId: CO, days, now: NOW })).rejects.toMatchObject({
        code: 'ERR_INVALID_ARGUMENT',
      });
      await expect(tierDistribution(t.db, { companyId: CO, days, now: NOW })).rejects.toBeInstanceOf(
        AppError,
      );
    }
    await expect(warmupAnalytics(t.db, { companyId: '', days: 7 })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    await expect(
      warmupAnalytics(t.db, { companyId: CO, days: 7, valuePerSecondSavedUsd: -1 }),
    ).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('warmupAnalytics', () => {
  test('an empty period: zeros, and nulls where a ratio or a mean has nothing to divide', async () => {
    const a = await warmupAnalytics(t.db, { companyId: CO, days: 7, now: NOW });
    expect(a).toEqual({
      companyId: CO,
      days: 7,
      from: FROM,
      to: TO,
      totalTriggered: 0,
      totalUsed: 0,
      totalCancelled: 0,
      totalFailed: 0,
      totalCompleted: 0,
      hitRate: null,
      totalCost: 0,
      costUnknownEvents: 0,
      costEstimatedEvents: 0,
      avgDuration: null,
      avgTimeSaved: null,
      totalTimeSavedMs: 0,
      valuePerSecondSavedUsd: DEFAULT_VALUE_PER_SECOND_SAVED_USD,
      estimatedSavings: 0,
      roi: null,
      byCategory: [],
      skippedByReason: {},
      autoDisabled: false,
      autoDisabledReason: null,
      gateWindow: {
        days: HIT_RATE_WINDOW_DAYS,
        from: FROM,
        triggered: 0,
        used: 0,
        hitRate: null,
        minimumHitRate: 0.3,
        minSamples: MIN_SAMPLES_COMPANY,
      },
    });
  });

  test('every field from the ledger', async () => {
    await events(
      ...times(10, () => ({ action: 'triggered' as const })),
      // Completed: 6 × $0.02, durations 100…600 ms (mean 350).
      ...times(6, (i) => ({ action: 'completed' as const, costUsd: 0.02, durationMs: (i + 1) * 100 })),
      // Cancelled: prompt tokens billed, estimated.
      ...times(3, () => ({ action: 'cancelled' as const, costUsd: 0.001, durationMs: 50, estimated: true })),
      { action: 'failed', costUsd: 0, durationMs: 4000 },
      // Used: 5 s saved in all (mean 1000 ms); no money on `used`.
      ...[1000, 1200, 800, 900, 1100].map((ms) => ({ action: 'used' as const, timeSavedMs: ms })),
      // Not warmups, not this company: ignored.
      { action: 'completed', purpose: 'tier3', costUsd: 5, durationMs: 9000 },
      { action: 'triggered', companyId: 'other-co' },
      { action: 'completed', companyId: 'other-co', costUsd: 7 },
    );
    const a = await warmupAnalytics(t.db, { companyId: CO, days: 7, now: NOW });
    expect(a).toMatchObject({
      totalTriggered: 10,
      totalUsed: 5,
      totalCancelled: 3,
      totalFailed: 1,
      totalCompleted: 6,
      hitRate: 0.5,
      totalCost: 0.123,
      costUnknownEvents: 0,
      costEstimatedEvents: 3,
      avgDuration: 350,
      avgTimeSaved: 1000,
      totalTimeSavedMs: 5000,
      valuePerSecondSavedUsd: 0.1,
      estimatedSavings: 0.5,
      autoDisabled: false,
      autoDisabledReason: null,
    });
    expect(a.roi).toBeCloseTo((0.5 - 0.123) / 0.123, 10);

    // The value of a second saved is a parameter.
    const cheap = await warmupAnalytics(t.db, {
      companyId: CO,
      days: 7,
      now: NOW,
      valuePerSecondSavedUsd: 0.01,
    });
    expect(cheap.estimatedSavings).toBe(0.05);
    expect(cheap.roi).toBeCloseTo((0.05 - 0.123) / 0.123, 10);
  });

  test('unknown costs are counted apart, never as 0; ROI needs a known, non-zero cost', async () => {
    await events(
      { action: 'triggered' },
      { action: 'triggered' },
      { action: 'completed', costUsd: 0.04, durationMs: 300 },
      { action: 'completed', costUsd: null, durationMs: 500 },
      { action: 'used', timeSavedMs: 1000 },
    );
    const a = await warmupAnalytics(t.db, { companyId: CO, days: 7, now: NOW });
    expect(a).toMatchObject({ totalCost: 0.04, costUnknownEvents: 1, avgDuration: 400, roi: null });

    await t.db.exec('DELETE FROM cost_events');
    await events(
      { action: 'triggered' },
      { action: 'cancelled', costUsd: 0 },
      { action: 'used', timeSavedMs: 700 },
    );
    const free = await warmupAnalytics(t.db, { companyId: CO, days: 7, now: NOW });
    expect(free).toMatchObject({ totalCost: 0, costUnknownEvents: 0, estimatedSavings: 0.07, roi: null });
  });

  test('the window is whole UTC days: from midnight days−1 days back, through the end of today', async () => {
    const from = Date.parse(FROM);
    const to = Date.parse(TO);
    await events(
      { action: 'triggered', at: new Date(from - 1) }, // the day before: out
      { action: 'triggered', at: new Date(from) }, // first instant: in
      { action: 'triggered', at: new Date(to - 1) }, // later today than `now`: in (today's bucket)
      { action: 'triggered', at: new Date(to) }, // tomorrow: out
    );
    expect((await warmupAnalytics(t.db, { companyId: CO, days: 7, now: NOW })).totalTriggered).toBe(2);
    expect((await warmupAnalytics(t.db, { companyId: CO, days: 8, now: NOW })).totalTriggered).toBe(3);
    const today = await warmupAnalytics(t.db, { companyId: CO, days: 1, now: NOW });
    expect(today).toMatchObject({ from: '2026-03-10T00:00:00.000Z', to: TO, totalTriggered: 1 });
    // `now` at the very first instant of a day still covers that whole day.
    const midnight = await warmupAnalytics(t.db, { companyId: CO, days: 1, now: new Date(to - DAY) });
    expect(midnight.totalTriggered).toBe(1);
  });

  describe('auto-disable: the gate rule on the ledger', () => {
    async function history(triggered: number, used: number, at: Date = hoursAgo(30)) {
      await events(
        ...times(triggered, () => ({ action: 'triggered' as const, at })),
        ...times(used, () => ({ action: 'used' as const, at, timeSavedMs: 900 })),
      );
    }
    const company = (minimumHitRate: number) => ({ warmup: { minimumHitRate } });

    test('below the minimum sample count: not disabled, however low the rate', async () => {
      await history(MIN_SAMPLES_COMPANY - 1, 0);
      const a = await warmupAnalytics(t.db, { companyId: CO, days: 7, now: NOW, company: company(0.3) });
      expect(a).toMatchObject({ autoDisabled: false, autoDisabledReason: null, hitRate: 0 });
    });

    test('at the minimum sample count: disabled below the threshold, not at it', async () => {
      await history(20, 5); // 0.25 < 0.3
      const low = await warmupAnalytics(t.db, { companyId: CO, days: 7, now: NOW, company: company(0.3) });
      expect(low).toMatchObject({ autoDisabled: true, autoDisabledReason: AUTO_DISABLED_REASON });
      expect(AUTO_DISABLED_REASON).toBe('auto-disabled-low-hit-rate');
      // The company's own threshold decides.
      const lenient = await warmupAnalytics(t.db, {
        companyId: CO,
        days: 7,
        now: NOW,
        company: company(0.25),
      });
      expect(lenient.autoDisabled).toBe(false);
      await history(0, 1); // 6 / 20 = 0.30: not below 0.3
      const at = await warmupAnalytics(t.db, { companyId: CO, days: 7, now: NOW, company: company(0.3) });
      expect(at).toMatchObject({ autoDisabled: false, gateWindow: { triggered: 20, used: 6, hitRate: 0.3 } });
    });

    test('over the gate window (7 UTC days), whatever `days` asks for', async () => {
      await history(20, 2, hoursAgo(72));
      await history(50, 0, new Date(Date.parse(FROM) - 1)); // 8 days ago: outside the gate window
      const today = await warmupAnalytics(t.db, { companyId: CO, days: 1, now: NOW });
      expect(today).toMatchObject({
        totalTriggered: 0,
        autoDisabled: true,
        gateWindow: { triggered: 20, used: 2, minimumHitRate: 0.3 },
      });
      const month = await warmupAnalytics(t.db, { companyId: CO, days: 30, now: NOW });
      expect(month).toMatchObject({ totalTriggered: 70, autoDisabled: true, gateWindow: { triggered: 20 } });
    });

    test('agrees with the warmup gate fed the same history', async () => {
      const base: CompanyConfig = demoCompany();
      const verdicts: Array<string | null> = [];
      for (const [triggered, used, minimumHitRate] of [
        [19, 0, 0.3],
        [20, 5, 0.3],
        [20, 6, 0.3],
        [40, 15, 0.4],
        [40, 16, 0.4],
      ] as const) {
        await t.db.exec('DELETE FROM cost_events');
        const stats = createMemoryWarmupStats();
        const at = hoursAgo(30);
        for (let i = 0; i < triggered; i++) stats.recordTriggered(CO, null, at);
        for (let i = 0; i < used; i++) stats.recordUsed(CO, null, at);
        await history(triggered, used, at);
        const co = {
          ...base,
          id: CO,
          warmup: { ...base.warmup, enabled: true, enablePatternLearning: false, minimumHitRate },
        } as CompanyConfig;
        const gate = createWarmupGate({ budgets: createMemoryBudgetStore(), stats, now: () => NOW });
        const decision = await gate({ company: co, tier1Confidence: 0, category: null });
        const a = await warmupAnalytics(t.db, { companyId: CO, days: 7, now: NOW, company: co });
        expect(a.autoDisabledReason, `${triggered}/${used} at ${minimumHitRate}`).toBe(
          decision.reason === AUTO_DISABLED_REASON ? AUTO_DISABLED_REASON : null,
        );
        verdicts.push(a.autoDisabledReason);
      }
      expect(verdicts).toEqual([null, AUTO_DISABLED_REASON, null, AUTO_DISABLED_REASON, null]);
    });
  });

  test('per category from the turn records, and why the gate skipped', async () => {
    await turns(
      // drain: 10 warmed, 2 used → 0.2, enough samples to be below the minimum.
      ...times(2, () => ({ category: 'drain', warmup: 'used' as const, tier: '3' as const })),
      ...times(5, () => ({ category: 'drain', warmup: 'cancelled' as const })),
      ...times(2, () => ({ category: 'drain', warmup: 'unused' as const })),
      { category: 'drain', warmup: 'failed', tier: 'fallback' },
      { category: 'drain', warmup: 'skipped', warmupReason: 'tier1-confidence-above-threshold' },
      // billing: 9 warmed, none used → too few samples to say.
      ...times(9, () => ({ category: 'billing', warmup: 'cancelled' as const })),
      // no category: 1 used.
      { category: null, warmup: 'used', tier: '3' },
      ...times(3, () => ({ category: null, warmup: 'skipped' as const, warmupReason: AUTO_DISABLED_REASON })),
      // Not considered, another company, another period: ignored.
      ...times(4, () => ({ category: 'drain', warmup: 'none' as const })),
      { category: 'drain', warmup: 'used', companyId: 'other-co' },
      { category: 'drain', warmup: 'used', at: new Date(Date.parse(FROM) - 1) },
    );
    const a = await warmupAnalytics(t.db, { companyId: CO, days: 7, now: NOW });
    expect(a.byCategory).toEqual([
      {
        category: 'drain',
        triggered: 10,
        used: 2,
        unused: 2,
        cancelled: 5,
        failed: 1,
        skipped: 1,
        hitRate: 0.2,
        belowMinimumHitRate: true,
      },
      {
        category: 'billing',
        triggered: 9,
        used: 0,
        unused: 0,
        cancelled: 9,
        failed: 0,
        skipped: 0,
        hitRate: 0,
        belowMinimumHitRate: false,
      },
      {
        category: null,
        triggered: 1,
        used: 1,
        unused: 0,
        cancelled: 0,
        failed: 0,
        skipped: 3,
        hitRate: 1,
        belowMinimumHitRate: false,
      },
    ]);
    expect(MIN_SAMPLES_CATEGORY).toBe(10);
    expect(a.skippedByReason).toEqual({ [AUTO_DISABLED_REASON]: 3, 'tier1-confidence-above-threshold': 1 });
    // The ledger is empty: categories come from turns only.
    expect(a.totalTriggered).toBe(0);
  });
});

describe('tierDistribution', () => {
  test('an empty period: zero turns, null rates', async () => {
    expect(await tierDistribution(t.db, { companyId: CO, days: 7, now: NOW })).toEqual({
      companyId: CO,
      days: 7,
      from: FROM,
      to: TO,
      turns: 0,
      tiers: { 1: 0, 2: 0, 3: 0, fallback: 0 },
      fallbackRate: null,
      reconciled: 0,
      reconcileRate: null,
      fallbackKinds: {},
      reconcileReasons: {},
    });
  });

  test('turns per tier, fallback and reconcile rates, within whole UTC days', async () => {
    await turns(
      ...times(4, () => ({ tier: '1' as const })),
      ...times(3, () => ({ tier: '2' as const, reconcileReason: 'unsure-detect', redetectMs: 40 })),
      { tier: '3', reconcileReason: 'new-critical-slot', redetectMs: 35 },
      // Sequential understanding: detect ran again, no reason recorded.
      { tier: '2', redetectMs: 20 },
      { tier: 'fallback', fallbackKind: 'noMatchFound' },
      { tier: 'fallback', fallbackKind: 'technicalIssue', at: new Date(Date.parse(FROM)) },
      // Out: the day before, tomorrow, another company.
      { tier: 'fallback', fallbackKind: 'noMatchFound', at: new Date(Date.parse(FROM) - 1) },
      { tier: '1', at: new Date(Date.parse(TO)) },
      { tier: '1', companyId: 'other-co' },
    );
    const d = await tierDistribution(t.db, { companyId: CO, days: 7, now: NOW });
    expect(d).toMatchObject({
      turns: 11,
      tiers: { 1: 4, 2: 4, 3: 1, fallback: 2 },
      fallbackRate: 2 / 11,
      reconciled: 5,
      reconcileRate: 5 / 11,
      fallbackKinds: { noMatchFound: 1, technicalIssue: 1 },
      reconcileReasons: { 'unsure-detect': 3, 'new-critical-slot': 1 },
    });
    expect((await tierDistribution(t.db, { companyId: CO, days: 8, now: NOW })).turns).toBe(12);
    expect((await tierDistribution(t.db, { companyId: CO, days: 1, now: NOW })).turns).toBe(10);
  });
});
