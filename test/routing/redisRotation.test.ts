/**
 * Fallback rotation: the in-process store always, the Redis store when REDIS_URL is set; with Redis,
 * two instances (two connections) share one sequence, and the resilient wrapper keeps rotating
 * while Redis is unreachable.
 */
import { describe, expect, test } from 'vitest';
import { createMemoryRotationStore } from '../../src/routing/fallbackPicker.ts';
import type { RotationStore } from '../../src/routing/fallbackPicker.ts';
import { createRedisRotationStore } from '../../src/routing/redisRotation.ts';
import { createRedisClient } from '../../src/store/redisClient.ts';
import { createRedisHealth } from '../../src/store/resilientRedis.ts';
import { createResilientRotationStore } from '../../src/store/resilientRotation.ts';
import { NO_REDIS, redisUrl, redisUrlVia, useTestRedis } from '../store/redisTestEnv.ts';

const testRedis = useTestRedis('rotation-test');
const { prefix, connect, track } = testRedis;

const stores: Array<[string, () => RotationStore]> = [
  ['memory', () => createMemoryRotationStore()],
  ...(redisUrl === undefined
    ? []
    : ([['redis', () => createRedisRotationStore({ redis: testRedis.redis, keyPrefix: prefix })]] as Array<
        [string, () => RotationStore]
      >)),
];

let n = 0;
describe.each(stores)('RotationStore contract: %s', (_name, make) => {
  test('counts 0, 1, 2, … per key', async () => {
    const store = make();
    const key = `fallback:acme${++n}:noMatchFound`;
    const other = `fallback:acme${n}:clarificationNeeded`;
    expect([
      await store.next(key),
      await store.next(key),
      await store.next(other),
      await store.next(key),
    ]).toEqual([0, 1, 0, 2]);
  });
});

describe.skipIf(redisUrl === undefined)(`RedisRotationStore (${redisUrl ? 'real Redis' : NO_REDIS})`, () => {
  test('two instances share one sequence: no index is handed out twice', async () => {
    const a = createRedisRotationStore({ redis: testRedis.redis, keyPrefix: prefix });
    const b = createRedisRotationStore({ redis: await connect(), keyPrefix: prefix });
    const key = `fallback:shared${++n}:noMatchFound`;
    const got = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).next(key)));
    expect([...got].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  test('uses INCR on the key the picker passes', async () => {
    const store = createRedisRotationStore({ redis: testRedis.redis, keyPrefix: prefix });
    await store.next('fallback:acme:technicalIssue');
    expect(await testRedis.redis.get(`${prefix}fallback:acme:technicalIssue`)).toBe('1');
  });

  test('the resilient wrapper keeps rotating with nothing listening on the port', async () => {
    const dead = track(createRedisClient(redisUrlVia(1), { name: 'rotation-dead', connectTimeoutMs: 200 }));
    const degraded: string[] = [];
    const health = createRedisHealth({ redis: dead, onDegraded: (r) => degraded.push(r) });
    const store = createResilientRotationStore({ store: createRedisRotationStore({ redis: dead }), health });
    expect([await store.next('k'), await store.next('k'), await store.next('k')]).toEqual([0, 1, 2]);
    expect(degraded).toHaveLength(1);
    health.close();
  });
});
