/**
 * The config cache: in-process layer → Redis → loader, invalidated on every instance through the
 * bus. The in-process bus (embedded default) runs always; with REDIS_URL, two cache instances on
 * separate Redis connections show a write on one evicting the other's copy within a second.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createConfigCache, createMemoryInvalidationBus } from '../../src/store/configCache.ts';
import type { ConfigCache, ConfigCacheKind, InvalidationBus } from '../../src/store/configCache.ts';
import { closeRedis, createRedisClient, waitForRedis } from '../../src/store/redisClient.ts';
import { createRedisInvalidationBus } from '../../src/store/redisInvalidationBus.ts';
import type { RedisInvalidationBus } from '../../src/store/redisInvalidationBus.ts';
import { createRedisHealth } from '../../src/store/resilientRedis.ts';
import { NO_REDIS, deleteByPrefix, redisUrl, redisUrlVia, testPrefix } from './redisTestEnv.ts';

async function until(check: () => boolean, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await sleep(10);
  }
}

/** A stand-in for Postgres: documents by kind and id, counting reads. */
function fakeDatabase() {
  const rows = new Map<string, unknown>();
  let reads = 0;
  let failing = false;
  return {
    set: (kind: ConfigCacheKind, id: string, value: unknown) => rows.set(`${kind}:${id}`, value),
    fail: (on: boolean) => (failing = on),
    get reads() {
      return reads;
    },
    async load(kind: ConfigCacheKind, id: string): Promise<unknown> {
      reads++;
      await sleep(1);
      if (failing) throw new Error('database unavailable');
      return rows.get(`${kind}:${id}`) ?? null;
    },
  };
}

describe('ConfigCache, in-process (embedded default)', () => {
  test('serves repeat reads from the in-process layer and coalesces concurrent misses', async () => {
    const db = fakeDatabase();
    db.set('company', 'acme', { name: 'Acme' });
    const cache = createConfigCache({ load: db.load });
    const first = await Promise.all(Array.from({ length: 10 }, () => cache.get('company', 'acme')));
    expect(first.every((v) => (v as { name: string }).name === 'Acme')).toBe(true);
    expect(db.reads).toBe(1);
    await cache.get('company', 'acme');
    expect(cache.stats()).toMatchObject({ loads: 1, localHits: 1 });
  });

  test('an invalidation on one cache evicts every cache on the bus', async () => {
    const db = fakeDatabase();
    const bus = createMemoryInvalidationBus();
    const a = createConfigCache({ load: db.load, bus });
    const b = createConfigCache({ load: db.load, bus });
    db.set('templates', 'acme', ['v1']);
    expect(await b.get('templates', 'acme')).toEqual(['v1']);
    db.set('templates', 'acme', ['v2']);
    expect(await b.get('templates', 'acme')).toEqual(['v1']); // still cached
    await a.invalidate('templates', 'acme');
    expect(await b.get('templates', 'acme')).toEqual(['v2']);
  });

  test('remembers unknown ids briefly (spam calls to an unowned number)', async () => {
    const db = fakeDatabase();
    let t = 0;
    const cache = createConfigCache({ load: db.load, now: () => t });
    expect(await cache.get('number', '+15550000000')).toBeNull();
    expect(await cache.get('number', '+15550000000')).toBeNull();
    expect(db.reads).toBe(1);
    t += 31_000;
    db.set('number', '+15550000000', 'acme');
    expect(await cache.get('number', '+15550000000')).toBe('acme');
  });

  test('serves an expired copy when the loader fails, and fails only without one', async () => {
    const db = fakeDatabase();
    let t = 0;
    const cache = createConfigCache({ load: db.load, now: () => t });
    db.set('company', 'acme', { v: 1 });
    await cache.get('company', 'acme');
    t += 3_600_000;
    db.fail(true);
    expect(await cache.get('company', 'acme')).toEqual({ v: 1 });
    await expect(cache.get('company', 'other')).rejects.toThrow('database unavailable');
  });

  test('a load that started before an invalidation does not cache its old result', async () => {
    const db = fakeDatabase();
    const cache = createConfigCache({ load: db.load });
    db.set('company', 'acme', { v: 1 });
    const inFlight = cache.get('company', 'acme');
    await cache.invalidate('company', 'acme');
    db.set('company', 'acme', { v: 2 });
    await inFlight;
    expect(await cache.get('company', 'acme')).toEqual({ v: 2 });
  });
});

describe.skipIf(redisUrl === undefined)(
  `ConfigCache with Redis (${redisUrl ? 'real Redis' : NO_REDIS})`,
  () => {
    const prefix = testPrefix();
    const clients: Redis[] = [];
    const buses: InvalidationBus[] = [];
    let admin: Redis;

    async function instance(db: ReturnType<typeof fakeDatabase>, name: string) {
      const redis = createRedisClient(redisUrl!, { name, commandTimeoutMs: 2000 });
      const subscriber = createRedisClient(redisUrl!, { name: `${name}-sub`, subscriber: true });
      clients.push(redis);
      expect(await waitForRedis(redis, 5000)).toBe(true);
      const bus: RedisInvalidationBus = createRedisInvalidationBus({
        publisher: redis,
        subscriber,
        keyPrefix: prefix,
      });
      buses.push(bus);
      expect(await bus.subscribed).toBe(true);
      const cache: ConfigCache = createConfigCache({ load: db.load, redis, bus, keyPrefix: prefix });
      return { cache, bus, redis, subscriber };
    }

    beforeAll(async () => {
      admin = createRedisClient(redisUrl!, { name: 'cache-admin', commandTimeoutMs: 2000 });
      clients.push(admin);
      await waitForRedis(admin, 5000);
    });
    afterAll(async () => {
      await deleteByPrefix(admin, prefix);
      for (const bus of buses) await bus.close();
      clients.forEach(closeRedis);
    });

    test('Redis keys and TTLs: company 300 s, templates 600 s, number 300 s', async () => {
      const db = fakeDatabase();
      db.set('company', 'acme', { name: 'Acme' });
      db.set('templates', 'acme', [{ id: 't1' }]);
      db.set('number', '+15550100100', 'acme');
      const { cache } = await instance(db, 'ttl');
      await cache.get('company', 'acme');
      await cache.get('templates', 'acme');
      await cache.get('number', '+15550100100');
      await sleep(20); // the Redis write is not awaited by get()
      expect(JSON.parse((await admin.get(`${prefix}company:acme`))!)).toEqual({ name: 'Acme' });
      expect(await admin.ttl(`${prefix}company:acme`)).toBeGreaterThan(295);
      expect(await admin.ttl(`${prefix}company:acme`)).toBeLessThanOrEqual(300);
      expect(await admin.ttl(`${prefix}templates:acme`)).toBeGreaterThan(595);
      expect(await admin.ttl(`${prefix}number:+15550100100`)).toBeGreaterThan(295);
    });

    test('a second instance reads what the first loaded from Redis, not the database', async () => {
      const db = fakeDatabase();
      db.set('company', 'shared', { name: 'Shared' });
      const a = await instance(db, 'a');
      const b = await instance(db, 'b');
      await a.cache.get('company', 'shared');
      await sleep(20);
      expect(await b.cache.get('company', 'shared')).toEqual({ name: 'Shared' });
      expect(db.reads).toBe(1);
      expect(b.cache.stats()).toMatchObject({ sharedHits: 1, loads: 0 });
    });

    test(
      'a write on one instance evicts the other instance’s in-process copy within a second',
      { timeout: 15_000 },
      async () => {
        const db = fakeDatabase();
        db.set('company', 'writeco', { greeting: 'v1' });
        const writer = await instance(db, 'writer');
        const reader = await instance(db, 'reader');
        expect(await reader.cache.get('company', 'writeco')).toEqual({ greeting: 'v1' });
        expect(await reader.cache.get('company', 'writeco')).toEqual({ greeting: 'v1' });
        expect(reader.cache.stats().localHits).toBe(1);

        const heard = new Promise<number>((resolve) =>
          reader.bus.subscribe((m) => m.id === 'writeco' && resolve(performance.now())),
        );
        db.set('company', 'writeco', { greeting: 'v2' }); // the write…
        const t0 = performance.now();
        await writer.cache.invalidate('company', 'writeco'); // …then the invalidation
        const evictedAfterMs = (await heard) - t0;
        const before = reader.cache.stats();
        expect(await reader.cache.get('company', 'writeco')).toEqual({ greeting: 'v2' });
        const readAfterMs = performance.now() - t0;
        const after = reader.cache.stats();

        expect(after.localHits).toBe(before.localHits); // missed its in-process layer
        expect(after.loads + after.sharedHits).toBe(before.loads + before.sharedHits + 1);
        expect(evictedAfterMs).toBeLessThan(1000);
        expect(readAfterMs).toBeLessThan(1000);
      },
    );

    test(
      'a subscriber reconnect drops the in-process layer (invalidations may have been missed)',
      { timeout: 15_000 },
      async () => {
        const db = fakeDatabase();
        db.set('company', 'resyncco', { v: 1 });
        const { cache, bus, subscriber } = await instance(db, 'resync');
        await cache.get('company', 'resyncco');
        let resyncs = 0;
        bus.onResync(() => resyncs++);
        subscriber.disconnect(true); // drop and reconnect
        await until(() => resyncs >= 2 && subscriber.status === 'ready', 10_000);
        const before = cache.stats();
        await cache.get('company', 'resyncco');
        expect(cache.stats().localHits).toBe(before.localHits);
      },
    );

    test('with Redis unreachable, misses go to the loader at once', async () => {
      const db = fakeDatabase();
      db.set('company', 'writeco', { v: 1 });
      const dead = createRedisClient(redisUrlVia(1), { name: 'cache-dead', connectTimeoutMs: 200 });
      clients.push(dead);
      const health = createRedisHealth({ redis: dead });
      const cache = createConfigCache({ load: db.load, redis: dead, health, keyPrefix: prefix });
      const t0 = performance.now();
      expect(await cache.get('company', 'writeco')).toEqual({ v: 1 });
      await cache.invalidate('company', 'writeco'); // does not throw either
      expect(await cache.get('company', 'writeco')).toEqual({ v: 1 });
      expect(performance.now() - t0).toBeLessThan(500);
      health.close();
    });
  },
);
