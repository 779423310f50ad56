/**
 * Handoff notes: the in-process store always; the Redis store against a real Redis when REDIS_URL
 * is set (single take across two connections, expiry, malformed values); and the fallback to the
 * process when Redis is unreachable, which needs no Redis at all.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, test } from 'vitest';
import type { HandoffStore } from '../../src/twilio/callControl.ts';
import { createMemoryHandoffs, createRedisHandoffs } from '../../src/twilio/handoffs.ts';
import { createRedisClient } from '../../src/store/redisClient.ts';
import type { RedisHealth } from '../../src/store/resilientRedis.ts';
import { NO_REDIS, redisUrl, redisUrlVia, useTestRedis } from '../store/redisTestEnv.ts';

const testRedis = useTestRedis('handoffs-test');
const { prefix, connect, track } = testRedis;
let n = 0;
const nextCallSid = () => `CA${(++n).toString(16).padStart(32, '0')}`;

const stores: Array<[string, () => HandoffStore]> = [
  ['memory', () => createMemoryHandoffs()],
  ...(redisUrl === undefined
    ? []
    : ([['redis', () => createRedisHandoffs(testRedis.redis, { keyPrefix: prefix })]] as Array<
        [string, () => HandoffStore]
      >)),
];

describe.each(stores)('HandoffStore contract: %s', (_name, make) => {
  test('a note is taken once, per call', async () => {
    const store = make();
    const a = nextCallSid();
    const b = nextCallSid();
    await store.put(a, { action: 'transfer', number: '+15557654321' });
    await store.put(b, { action: 'hangup' });
    expect(await store.take(a)).toEqual({ action: 'transfer', number: '+15557654321' });
    expect(await store.take(a)).toBeNull();
    expect(await store.take(b)).toEqual({ action: 'hangup' });
    expect(await store.take(nextCallSid())).toBeNull();
  });

  test('a second put for the same call replaces the first', async () => {
    const store = make();
    const sid = nextCallSid();
    await store.put(sid, { action: 'hangup' });
    await store.put(sid, { action: 'transfer', number: '+15551112222' });
    expect(await store.take(sid)).toEqual({ action: 'transfer', number: '+15551112222' });
  });
});

describe('createMemoryHandoffs', () => {
  test('a note expires after ttlMs', async () => {
    let t = 1_000_000;
    const store = createMemoryHandoffs({ ttlMs: 60_000, now: () => t });
    const fresh = nextCallSid();
    const stale = nextCallSid();
    await store.put(stale, { action: 'hangup' });
    t += 30_000;
    await store.put(fresh, { action: 'hangup' });
    t += 30_000; // stale is exactly 60 s old now
    expect(await store.take(stale)).toBeNull();
    expect(await store.take(fresh)).toEqual({ action: 'hangup' });
  });

  test('the default ttl is one minute', async () => {
    let t = 0;
    const store = createMemoryHandoffs({ now: () => t });
    const a = nextCallSid();
    const b = nextCallSid();
    await store.put(a, { action: 'hangup' });
    await store.put(b, { action: 'hangup' });
    t = 59_999;
    expect(await store.take(a)).not.toBeNull();
    t = 60_000;
    expect(await store.take(b)).toBeNull();
  });
});

describe('createRedisHandoffs with Redis unreachable', () => {
  test('falls back to the process: nothing rejects and notes are still taken once', async () => {
    const dead = track(createRedisClient(redisUrlVia(1), { name: 'handoffs-dead', connectTimeoutMs: 200 }));
    const store = createRedisHandoffs(dead, { keyPrefix: prefix });
    const sid = nextCallSid();
    await store.put(sid, { action: 'transfer', number: '+15557654321' });
    expect(await store.take(sid)).toEqual({ action: 'transfer', number: '+15557654321' });
    expect(await store.take(sid)).toBeNull();
  });
});

describe.skipIf(redisUrl === undefined)(`createRedisHandoffs (${redisUrl ? 'real Redis' : NO_REDIS})`, () => {
  test('stores under {prefix}handoff:{callSid} with a TTL', async () => {
    const store = createRedisHandoffs(testRedis.redis, { keyPrefix: prefix, ttlMs: 30_000 });
    const sid = nextCallSid();
    await store.put(sid, { action: 'hangup' });
    const pttl = await testRedis.redis.pttl(`${prefix}handoff:${sid}`);
    expect(pttl).toBeGreaterThan(25_000);
    expect(pttl).toBeLessThanOrEqual(30_000);
  });

  test('two instances racing for one note: exactly one gets it', async () => {
    const a = createRedisHandoffs(testRedis.redis, { keyPrefix: prefix });
    const b = createRedisHandoffs(await connect(), { keyPrefix: prefix });
    for (let i = 0; i < 20; i++) {
      const sid = nextCallSid();
      await a.put(sid, { action: 'hangup' });
      const got = await Promise.all([a.take(sid), b.take(sid), a.take(sid), b.take(sid)]);
      expect(got.filter((h) => h !== null)).toHaveLength(1);
    }
  });

  test('a note expires in Redis', async () => {
    const store = createRedisHandoffs(testRedis.redis, { keyPrefix: prefix, ttlMs: 50 });
    const sid = nextCallSid();
    await store.put(sid, { action: 'hangup' });
    await sleep(120);
    expect(await store.take(sid)).toBeNull();
  });

  test('a malformed value is taken and ignored, not acted on', async () => {
    const store = createRedisHandoffs(testRedis.redis, { keyPrefix: prefix });
    const bad = [
      'not json',
      '{"action":"transfer"}',
      '{"action":"transfer","number":"+1555<Hangup/>"}',
      '{"action":"dance"}',
    ];
    for (const value of bad) {
      const sid = nextCallSid();
      await testRedis.redis.set(`${prefix}handoff:${sid}`, value);
      expect(await store.take(sid)).toBeNull();
      expect(await testRedis.redis.exists(`${prefix}handoff:${sid}`)).toBe(0);
    }
  });

  test('with shared health: notes kept in process during an outage are found after it', async () => {
    let degraded = true;
    // RedisHealth's contract as the store uses it: op while healthy, fallback during an outage.
    const health = {
      get degraded() {
        return degraded;
      },
      run: <T>(op: () => Promise<T>, fallback: () => T | Promise<T>) =>
        degraded ? Promise.resolve(fallback()) : op(),
    } as unknown as RedisHealth;
    const store = createRedisHandoffs(testRedis.redis, { keyPrefix: prefix, health });
    const sid = nextCallSid();
    await store.put(sid, { action: 'transfer', number: '+15557654321' });
    expect(await testRedis.redis.exists(`${prefix}handoff:${sid}`)).toBe(0);
    degraded = false;
    expect(await store.take(sid)).toEqual({ action: 'transfer', number: '+15557654321' });
    expect(await store.take(sid)).toBeNull();

    const shared = nextCallSid();
    await store.put(shared, { action: 'hangup' });
    expect(await testRedis.redis.exists(`${prefix}handoff:${shared}`)).toBe(1);
  });
});
