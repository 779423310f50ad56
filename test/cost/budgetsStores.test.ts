/**
 * The BudgetStore contract, run against every implementation: the in-process store always, and the
 * Redis store and its resilient wrapper when REDIS_URL is set. Redis-only behaviour (reservation
 * expiry, key expiry, one script per operation) follows.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import { dailyWarmupKey, monthlyKey } from '../../src/cost/budgets.ts';
import { createLocalBudgetStore } from '../../src/cost/budgetsLocal.ts';
import type { SyncableBudgetStore } from '../../src/cost/budgetsLocal.ts';
import { budgetKeyExpiresAt, createRedisBudgetStore } from '../../src/cost/redisBudgets.ts';
import {
  closeRedis,
  createRedisClient,
  defineScript,
  runScript,
  waitForRedis,
} from '../../src/store/redisClient.ts';
import { createResilientBudgetStore } from '../../src/store/resilientBudgets.ts';
import { createRedisHealth } from '../../src/store/resilientRedis.ts';
import type { RedisHealth } from '../../src/store/resilientRedis.ts';
import { NO_REDIS, deleteByPrefix, redisUrl, testPrefix } from '../store/redisTestEnv.ts';

const prefix = testPrefix();
let redis: Redis | undefined;
let health: RedisHealth | undefined;

beforeAll(async () => {
  if (redisUrl !== undefined) {
    redis = createRedisClient(redisUrl, { name: 'budgets-test', commandTimeoutMs: 2000 });
    expect(await waitForRedis(redis, 5000)).toBe(true);
    health = createRedisHealth({ redis });
  }
});
// The resilient wrapper would pass the contract on its local fallback too: make sure it did not.
afterEach(() => {
  expect(health?.reason ?? null).toBeNull();
});
afterAll(async () => {
  health?.close();
  if (redis) {
    await deleteByPrefix(redis, prefix);
    closeRedis(redis);
  }
});

let n = 0;
const freshKey = () => `budget:tier3:c${++n}:2026-11`;

const stores: Array<[string, () => SyncableBudgetStore]> = [
  ['local', () => createLocalBudgetStore()],
  ...(redisUrl === undefined
    ? []
    : ([
        ['redis', () => createRedisBudgetStore({ redis: redis!, keyPrefix: prefix })],
        [
          'resilient(redis)',
          () =>
            createResilientBudgetStore({
              store: createRedisBudgetStore({ redis: redis!, keyPrefix: prefix }),
              health: health!,
            }),
        ],
      ] as Array<[string, () => SyncableBudgetStore]>)),
];

describe.each(stores)('BudgetStore contract: %s', (_name, make) => {
  test('reserves while spent + reserved + amount ≤ limit, and not beyond', async () => {
    const store = make();
    const key = freshKey();
    const a = await store.reserve(key, 400, 1000);
    const b = await store.reserve(key, 600, 1000);
    expect(a).not.toBeNull();
    expect(b).not.toBeNull();
    expect(await store.reserve(key, 1, 1000)).toBeNull();
    await store.settle(a!, 100);
    // 300 released by the settle: 100 spent + 600 reserved + 300 = 1000 fits exactly.
    expect(await store.reserve(key, 300, 1000)).not.toBeNull();
    expect(await store.reserve(key, 1, 1000)).toBeNull();
    expect(await store.spent(key)).toBe(100);
  });

  test('settling at 0 releases the reservation and spends nothing', async () => {
    const store = make();
    const key = freshKey();
    const r = await store.reserve(key, 1000, 1000);
    await store.settle(r!, 0);
    expect(await store.spent(key)).toBe(0);
    expect(await store.reserve(key, 1000, 1000)).not.toBeNull();
  });

  test('integer micro-dollars add up exactly (no float drift)', async () => {
    const store = make();
    const key = freshKey();
    const limit = 10_000_000;
    for (let i = 0; i < 100; i++) {
      const r = await store.reserve(key, 1000, limit);
      // 0.000_123 USD, 100 times: a float accumulator would not land on 12_300.
      await store.settle(r!, 123);
    }
    expect(await store.spent(key)).toBe(12_300);
  });

  test('concurrent reservations never exceed the limit', async () => {
    const store = make();
    const key = freshKey();
    const results = await Promise.all(Array.from({ length: 300 }, () => store.reserve(key, 10, 1000)));
    expect(results.filter((r) => r !== null)).toHaveLength(100);
  });

  test('seed and reconcile raise the settled spend and never lower it', async () => {
    const store = make();
    const key = freshKey();
    await store.seed(key, 5000);
    expect(await store.spent(key)).toBe(5000);
    await store.seed(key, 3000);
    expect(await store.spent(key)).toBe(5000);
    const r = await store.reserve(key, 100, 6000);
    await store.settle(r!, 100);
    expect(await store.reconcile(key, 4000)).toEqual({ before: 5100, after: 5100 });
    expect(await store.reconcile(key, 7000)).toEqual({ before: 5100, after: 7000 });
    expect(await store.spent(key)).toBe(7000);
    expect(await store.reserve(key, 1, 7000)).toBeNull();
  });

  test('reconcile reports a missing counter as before: null', async () => {
    const store = make();
    expect(await store.reconcile(freshKey(), 42)).toEqual({ before: null, after: 42 });
  });
});

describe('budgetKeyExpiresAt', () => {
  const now = new Date('2026-11-20T12:00:00Z');
  test('a monthly key lives until its month ends plus 7 days', () => {
    const key = monthlyKey('acme', now);
    expect(new Date(budgetKeyExpiresAt(key, now) * 1000).toISOString()).toBe('2026-12-08T00:00:00.000Z');
  });
  test('a daily warmup key lives until its UTC day ends plus 7 days', () => {
    const key = dailyWarmupKey('acme', now);
    expect(new Date(budgetKeyExpiresAt(key, now) * 1000).toISOString()).toBe('2026-11-28T00:00:00.000Z');
  });
  test('December rolls into January', () => {
    expect(new Date(budgetKeyExpiresAt('budget:tier3:a:2026-12', now) * 1000).toISOString()).toBe(
      '2027-01-08T00:00:00.000Z',
    );
  });
  test('a late write to an old period never expires the key at once', () => {
    expect(budgetKeyExpiresAt('budget:tier3:a:2020-01', now)).toBe(Math.ceil(now.getTime() / 1000) + 86_400);
  });
  test('a key without a period lives 35 days', () => {
    expect(budgetKeyExpiresAt('budget:custom', now)).toBe(Math.ceil(now.getTime() / 1000) + 35 * 86_400);
  });
});

describe.skipIf(redisUrl === undefined)(`RedisBudgetStore (${redisUrl ? 'real Redis' : NO_REDIS})`, () => {
  test('an expired reservation (its process died) is released by the next reserve', async () => {
    const store = createRedisBudgetStore({ redis: redis!, keyPrefix: prefix, reservationTtlMs: 50 });
    const key = freshKey();
    const orphan = await store.reserve(key, 1000, 1000);
    expect(orphan).not.toBeNull();
    expect(await store.reserve(key, 1, 1000)).toBeNull();
    await sleep(80);
    const next = await store.reserve(key, 1000, 1000);
    expect(next).not.toBeNull();
    expect(await store.snapshot(key)).toEqual({ spent: 0, reserved: 1000, reservations: 1 });
    // The orphan's late settle still counts its spend (never under-count), and does not release
    // the reservation that replaced it.
    await store.settle(orphan!, 10);
    expect(await store.snapshot(key)).toEqual({ spent: 10, reserved: 1000, reservations: 1 });
  });

  test('keys carry their period and expire after it (plus margin)', async () => {
    const now = new Date();
    const store = createRedisBudgetStore({ redis: redis!, keyPrefix: prefix });
    const key = dailyWarmupKey(`ttl${++n}`, now);
    await store.reserve(key, 5, 100);
    const ttl = await redis!.ttl(`${prefix}{${key}}`);
    const expected = budgetKeyExpiresAt(key, now) - Math.floor(Date.now() / 1000);
    expect(ttl).toBeGreaterThan(expected - 5);
    expect(ttl).toBeLessThanOrEqual(expected + 1);
    expect(await redis!.ttl(`${prefix}{${key}}:resv`)).toBeGreaterThan(0);
  });

  test('reserve and settle are one round trip each (one EVALSHA)', async () => {
    const store = createRedisBudgetStore({ redis: redis!, keyPrefix: prefix });
    const key = freshKey();
    await store.settle((await store.reserve(key, 1, 10))!, 1); // loads the scripts
    const spy = vi.spyOn(redis!, 'sendCommand');
    let sent: string[];
    try {
      const r = await store.reserve(key, 1, 10);
      await store.settle(r!, 1);
    } finally {
      sent = spy.mock.calls.map(([command]) => command.name);
      spy.mockRestore();
    }
    expect(sent).toEqual(['evalsha', 'evalsha']);
  });

  test('rejects amounts that are not integer micro-dollars', async () => {
    const store = createRedisBudgetStore({ redis: redis!, keyPrefix: prefix });
    await expect(store.reserve(freshKey(), 1.5, 10)).rejects.toMatchObject({
      code: 'ERR_BUDGET_INVALID_AMOUNT',
    });
    await expect(store.reserve(freshKey(), -1, 10)).rejects.toMatchObject({
      code: 'ERR_BUDGET_INVALID_AMOUNT',
    });
  });

  test('a script Redis has not seen (first use, restart) is sent in full once', async () => {
    // A unique body, so its SHA is certainly unknown (no SCRIPT FLUSH on a shared server).
    const script = defineScript(`-- ${prefix}${++n}\nreturn tonumber(ARGV[1]) + 1`);
    expect(await runScript(redis!, script, [], [41])).toBe(42);
    expect(await redis!.script('EXISTS', script.sha)).toEqual([1]);
  });
});
