/**
 * Budget counters from the cost ledger: the SQL sums (periods, purposes, unpriced events, the
 * settle rounding), seeding at start and reconciling, on PostgreSQL or PGlite, into the in-process
 * store and (with REDIS_URL) the Redis store.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { dailyWarmupKey, monthlyKey } from '../../src/cost/budgets.ts';
import { createLocalBudgetStore } from '../../src/cost/budgetsLocal.ts';
import type { SyncableBudgetStore } from '../../src/cost/budgetsLocal.ts';
import { reconcileBudgets, seedBudgets, spendFromLedger } from '../../src/cost/budgetSync.ts';
import { newCostEvent } from '../../src/cost/costEvent.ts';
import type { CostEvent } from '../../src/cost/costEvent.ts';
import { createRedisBudgetStore } from '../../src/cost/redisBudgets.ts';
import { closeRedis, createRedisClient, waitForRedis } from '../../src/store/redisClient.ts';
import { insertCostEvents } from '../../src/store/sql/insertCostEvents.ts';
import { BACKEND, openTestDb } from '../store/dbForTest.ts';
import type { TestDb } from '../store/dbForTest.ts';
import { deleteByPrefix, redisUrl, testPrefix } from '../store/redisTestEnv.ts';

const NOW = new Date('2026-11-21T10:00:00Z');
let t: TestDb;
let redis: Redis | undefined;
const prefix = testPrefix();

function event(fields: Partial<CostEvent> & Pick<CostEvent, 'purpose' | 'action'>): CostEvent {
  return newCostEvent({
    companyId: 'acme',
    provider: 'openai',
    model: 'gpt-4o-mini',
    tier: 3,
    at: '2026-11-21T09:00:00.000Z',
    ...fields,
  });
}

beforeAll(async () => {
  t = await openTestDb();
  await insertCostEvents(t.db, [
    event({ purpose: 'tier3', action: 'completed', costUsd: 0.25 }),
    // A cancelled warmup today: counts for both keys.
    event({ purpose: 'warmup', action: 'cancelled', costUsd: 0.1, estimated: true }),
    // A warmup earlier this month: the month, not today.
    event({ purpose: 'warmup', action: 'completed', costUsd: 0.05, at: '2026-11-02T23:59:59.000Z' }),
    // Rounded up per event, as settle does: three events of 0.1 micro-dollar are 3 micro-dollars.
    ...[1, 2, 3].map(() => event({ purpose: 'tier3', action: 'completed', costUsd: 0.0000001 })),
    // Not spend: markers, unpriced models, other purposes, last month, another company.
    event({ purpose: 'warmup', action: 'triggered' }),
    event({ purpose: 'tier3', action: 'completed', costUsd: null, model: 'mystery-model' }),
    event({ purpose: 'embedding', action: 'completed', costUsd: 0.5, tier: 2 }),
    event({ purpose: 'tier3', action: 'completed', costUsd: 9, at: '2026-10-31T23:59:59.999Z' }),
    event({ purpose: 'tier3', action: 'completed', costUsd: 2, companyId: 'other' }),
  ]);
  if (redisUrl !== undefined) {
    redis = createRedisClient(redisUrl, { commandTimeoutMs: 2000 });
    // Commands fail fast while disconnected (no offline queue): wait for the connection first.
    if (!(await waitForRedis(redis, 5000))) throw new Error('Redis did not become ready');
  }
});

afterAll(async () => {
  await t.dispose();
  if (redis !== undefined) {
    await deleteByPrefix(redis, prefix);
    closeRedis(redis);
  }
});

test(`the ledger's spend per company for this UTC month and day (${BACKEND})`, async () => {
  const spend = await spendFromLedger(t.db, NOW);
  expect(spend.sort((a, b) => a.companyId.localeCompare(b.companyId))).toEqual([
    { companyId: 'acme', tier3MonthMicros: 250_000 + 100_000 + 50_000 + 3, warmupDayMicros: 100_000 },
    { companyId: 'other', tier3MonthMicros: 2_000_000, warmupDayMicros: 0 },
  ]);
});

const stores: Array<[string, () => SyncableBudgetStore]> = [['in-process', () => createLocalBudgetStore()]];
if (redisUrl !== undefined) {
  stores.push([
    'redis',
    () => createRedisBudgetStore({ redis: redis!, keyPrefix: `${prefix}${Math.random()}:` }),
  ]);
}

describe.each(stores)('seed and reconcile into the %s store', (_name, make) => {
  test('seeding raises the counters to the ledger, never lowers them', async () => {
    const budgets = make();
    await budgets.seed(monthlyKey('other', NOW), 5_000_000);
    expect(await seedBudgets(budgets, t.db, NOW)).toBe(2);
    expect(await budgets.spent(monthlyKey('acme', NOW))).toBe(400_003);
    expect(await budgets.spent(dailyWarmupKey('acme', NOW))).toBe(100_000);
    // Another instance had settled more than the ledger holds yet: kept.
    expect(await budgets.spent(monthlyKey('other', NOW))).toBe(5_000_000);
  });

  test('reconciling reports the counters that had fallen behind', async () => {
    const budgets = make();
    await budgets.seed(monthlyKey('acme', NOW), 100);
    await budgets.seed(dailyWarmupKey('acme', NOW), 100_000);
    const drift = await reconcileBudgets(budgets, t.db, NOW);
    // acme's monthly counter was behind; its daily one was right; other's did not exist (seeding).
    expect(drift).toEqual([{ key: monthlyKey('acme', NOW), beforeMicros: 100, afterMicros: 400_003 }]);
    expect(await budgets.spent(monthlyKey('other', NOW))).toBe(2_000_000);
    expect(await reconcileBudgets(budgets, t.db, NOW)).toEqual([]);
  });
});
