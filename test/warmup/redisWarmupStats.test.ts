/**
 * Warmup statistics: the Redis version answers exactly as the in-memory one for the same records
 * (same buckets, same sliding 7-day window), keeps each day 8 days, reads a window in one round
 * trip, and its resilient wrapper counts locally through an outage and catches Redis up afterwards.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { closeRedis, createRedisClient, waitForRedis } from '../../src/store/redisClient.ts';
import { createRedisHealth } from '../../src/store/resilientRedis.ts';
import { createResilientWarmupStats } from '../../src/store/resilientWarmupStats.ts';
import {
  WARMUP_STATS_TTL_SECONDS,
  createRedisWarmupStats,
  warmupWindow,
} from '../../src/warmup/redisWarmupStats.ts';
import { createMemoryWarmupStats } from '../../src/warmup/warmupStats.ts';
import type { WarmupStats } from '../../src/warmup/warmupStats.ts';
import { NO_REDIS, deleteByPrefix, redisUrl, redisUrlVia, testPrefix } from '../store/redisTestEnv.ts';

const prefix = testPrefix();
let redis: Redis | undefined;
const clients: Redis[] = [];
beforeAll(async () => {
  if (redisUrl !== undefined) {
    redis = createRedisClient(redisUrl, { name: 'warmup-test', commandTimeoutMs: 2000 });
    clients.push(redis);
    expect(await waitForRedis(redis, 5000)).toBe(true);
  }
});
afterAll(async () => {
  if (redis) await deleteByPrefix(redis, prefix);
  clients.forEach(closeRedis);
});

const DAY = 86_400_000;
const now = new Date('2026-11-20T15:00:00Z');
const daysAgo = (d: number) => new Date(now.getTime() - d * DAY);

let n = 0;
/** Waits for fire-and-forget records to land. */
const settleWrites = async () => {
  if (redis) await redis.ping();
};

const stats: Array<[string, () => WarmupStats]> = [
  ['memory', () => createMemoryWarmupStats()],
  ...(redisUrl === undefined
    ? []
    : ([['redis', () => createRedisWarmupStats({ redis: redis!, keyPrefix: prefix })]] as Array<
        [string, () => WarmupStats]
      >)),
];

describe.each(stats)('WarmupStats contract: %s', (_name, make) => {
  test('totals and per-category rates over a sliding 7-day window', async () => {
    const s = make();
    const c = `co${++n}`;
    // 8 days ago: outside the window. 6 days ago and today: inside.
    s.recordTriggered(c, 'billing', daysAgo(8));
    s.recordUsed(c, 'billing', daysAgo(8));
    for (let i = 0; i < 3; i++) s.recordTriggered(c, 'billing', daysAgo(6));
    s.recordUsed(c, 'billing', daysAgo(6));
    s.recordTriggered(c, null, now);
    s.recordUsed(c, null, now);
    s.recordTriggered(c, 'hours', now);
    await settleWrites();

    expect(await s.hitRate(c, 7, now)).toEqual({ triggered: 5, used: 2 });
    expect(await s.hitRate(c, 7, now, 'billing')).toEqual({ triggered: 3, used: 1 });
    expect(await s.hitRate(c, 7, now, null)).toEqual({ triggered: 1, used: 1 });
    expect(await s.hitRate(c, 7, now, 'hours')).toEqual({ triggered: 1, used: 0 });
    expect(await s.hitRate(c, 9, now, 'billing')).toEqual({ triggered: 4, used: 2 });
    expect(await s.hitRate(c, 1, now)).toEqual({ triggered: 2, used: 1 });
    expect(await s.hitRate(`other${n}`, 7, now)).toEqual({ triggered: 0, used: 0 });
  });

  test('the window follows UTC days', async () => {
    const s = make();
    const c = `co${++n}`;
    s.recordTriggered(c, null, new Date('2026-11-13T23:59:59Z')); // 8th UTC day back from the 20th
    s.recordTriggered(c, null, new Date('2026-11-14T00:00:00Z')); // 7th
    await settleWrites();
    expect(await s.hitRate(c, 7, new Date('2026-11-20T00:00:01Z'))).toEqual({ triggered: 1, used: 0 });
  });
});

describe.skipIf(redisUrl === undefined)(`RedisWarmupStats (${redisUrl ? 'real Redis' : NO_REDIS})`, () => {
  test('one hash per company and UTC day, living 8 days', async () => {
    const s = createRedisWarmupStats({ redis: redis!, keyPrefix: prefix });
    const c = `co${++n}`;
    await s.increment(c, 'billing', now, 'triggered');
    const key = `${prefix}warmup:{${c}}:2026-11-20`;
    expect(await redis!.hgetall(key)).toEqual({ 'triggered|*': '1', 'triggered|billing': '1' });
    const ttl = await redis!.ttl(key);
    expect(ttl).toBeGreaterThan(WARMUP_STATS_TTL_SECONDS - 5);
    expect(ttl).toBeLessThanOrEqual(WARMUP_STATS_TTL_SECONDS);
  });

  test('reading 7 days is one pipeline (one round trip)', async () => {
    const s = createRedisWarmupStats({ redis: redis!, keyPrefix: prefix });
    const pipeline = vi.spyOn(redis!, 'pipeline');
    const sendCommand = vi.spyOn(redis!, 'sendCommand');
    let pipelines: number;
    let sent: Array<[string, boolean]>;
    try {
      await s.hitRate('anyone', 7, now);
    } finally {
      pipelines = pipeline.mock.calls.length;
      sent = sendCommand.mock.calls.map(([command, stream]) => [command.name, stream !== undefined]);
      pipeline.mockRestore();
      sendCommand.mockRestore();
    }
    expect(pipelines).toBe(1);
    // Seven HMGETs, all written as one pipeline.
    expect(sent).toEqual(Array.from({ length: 7 }, () => ['hmget', true]));
    expect(warmupWindow(now, 7)).toEqual([
      '2026-11-20',
      '2026-11-19',
      '2026-11-18',
      '2026-11-17',
      '2026-11-16',
      '2026-11-15',
      '2026-11-14',
    ]);
  });

  test('resilient: counts locally while Redis is unreachable, and adds them to Redis after', async () => {
    const dead = createRedisClient(redisUrlVia(1), { name: 'warmup-dead', connectTimeoutMs: 200 });
    clients.push(dead);
    const health = createRedisHealth({ redis: dead });
    const s = createResilientWarmupStats({
      store: createRedisWarmupStats({ redis: dead, keyPrefix: prefix }),
      health,
    });
    const c = `co${++n}`;
    s.recordTriggered(c, 'billing', now);
    s.recordTriggered(c, 'billing', now);
    s.recordUsed(c, 'billing', now);
    await settleWrites();
    await new Promise((r) => setTimeout(r, 20));
    expect(health.degraded).toBe(true);
    expect(await s.hitRate(c, 7, now, 'billing')).toEqual({ triggered: 2, used: 1 });
    expect(s.unsynced()).toHaveLength(4);
    health.close();

    // Catch-up, as the recovery hook does, into the real Redis.
    const live = createResilientWarmupStats({
      store: createRedisWarmupStats({ redis: redis!, keyPrefix: prefix }),
      health: createRedisHealth({ redis: redis! }),
    });
    await createRedisWarmupStats({ redis: redis!, keyPrefix: prefix }).addCounts(s.unsynced());
    expect(await live.hitRate(c, 7, now, 'billing')).toEqual({ triggered: 2, used: 1 });
    expect(await live.hitRate(c, 7, now)).toEqual({ triggered: 2, used: 1 });
  });
});
