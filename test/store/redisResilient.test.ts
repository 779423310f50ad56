/**
 * Redis outages, for real: a port where nothing listens, and a TCP proxy in front of Redis that is
 * severed, blackholed and restored while a simulated engine keeps using budgets, rotation, warmup
 * statistics and the config cache. Every call must keep answering within a bounded time, never
 * throw, alert once per outage, and catch Redis up when it returns.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createRedisBudgetStore } from '../../src/cost/redisBudgets.ts';
import { createRedisServices } from '../../src/store/redisServices.ts';
import type { RedisServices } from '../../src/store/redisServices.ts';
import { isRedisOutage } from '../../src/store/resilientRedis.ts';
import { startFaultProxy } from './redisFaultProxy.ts';
import type { FaultProxy } from './redisFaultProxy.ts';
import {
  NO_REDIS,
  adminClient,
  deleteByPrefix,
  redisTarget,
  redisUrl,
  redisUrlVia,
  testPrefix,
} from './redisTestEnv.ts';

const COMMAND_TIMEOUT_MS = 100;
/** What one engine operation may take while Redis misbehaves: the command timeout plus slack. */
const BOUND_MS = 400;

async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** One turn's worth of shared-state use, timed; returns the slowest operation. */
async function engineTurn(s: RedisServices, companyId: string): Promise<number> {
  const now = new Date();
  const timed = async <T>(op: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const result = await op();
    slowest = Math.max(slowest, performance.now() - t0);
    return result;
  };
  let slowest = 0;
  const r = await timed(() => s.budgets.reserve(`budget:tier3:${companyId}:2026-11`, 10, 1_000_000));
  if (r) await timed(() => s.budgets.settle(r, 5));
  await timed(() => s.budgets.spent(`budget:warmup:${companyId}:2026-11-20`));
  await timed(() => s.rotation.next(`fallback:${companyId}:noMatchFound`));
  s.stats.recordTriggered(companyId, 'billing', now);
  await timed(() => s.stats.hitRate(companyId, 7, now));
  return slowest;
}

/** Keeps turns running until stopped; collects the slowest operation and any error. */
function runEngine(s: RedisServices, companyId: string) {
  let running = true;
  let slowest = 0;
  let turns = 0;
  const errors: unknown[] = [];
  const loop = (async () => {
    while (running) {
      try {
        slowest = Math.max(slowest, await engineTurn(s, companyId));
        turns++;
      } catch (err) {
        errors.push(err);
      }
      await sleep(5);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { slowest, turns, errors };
    },
  };
}

test('isRedisOutage tells an unreachable Redis from a bug', () => {
  expect(isRedisOutage(new Error("Stream isn't writeable and enableOfflineQueue options is false"))).toBe(
    true,
  );
  expect(isRedisOutage(new Error('Command timed out'))).toBe(true);
  expect(isRedisOutage(Object.assign(new Error('LOADING Redis is loading'), { name: 'ReplyError' }))).toBe(
    true,
  );
  expect(isRedisOutage(Object.assign(new Error('WRONGTYPE Operation'), { name: 'ReplyError' }))).toBe(false);
});

test('without REDIS_URL everything is in process', async () => {
  const s = await createRedisServices({ redisUrl: undefined });
  expect(s.mode).toBe('memory');
  expect(await engineTurn(s, 'acme')).toBeLessThan(50);
  await s.close();
});

describe('nothing listening on the Redis port', () => {
  test('the engine starts, every call answers at once, one alert', { timeout: 10_000 }, async () => {
    const degraded: string[] = [];
    const t0 = performance.now();
    const s = await createRedisServices({
      redisUrl: redisUrlVia(await deadPort()),
      connectTimeoutMs: 300,
      commandTimeoutMs: COMMAND_TIMEOUT_MS,
      onDegraded: (reason) => degraded.push(reason),
    });
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(s.mode).toBe('redis');
    expect(s.health?.degraded).toBe(true);

    for (let i = 0; i < 20; i++) expect(await engineTurn(s, 'acme')).toBeLessThan(50);

    // Local budget mode: a quarter of the limit (nothing known about this key).
    const key = 'budget:tier3:fresh:2026-11';
    expect(await s.budgets.reserve(key, 200, 1000)).not.toBeNull();
    expect(await s.budgets.reserve(key, 100, 1000)).toBeNull();
    // Cache misses go to the loader.
    const cache = s.configCache({ load: (_kind, id) => Promise.resolve({ id }) });
    expect(await cache.get('company', 'acme')).toEqual({ id: 'acme' });

    expect(degraded).toHaveLength(1);
    await s.close();
  });
});

describe.skipIf(redisUrl === undefined)(
  `Redis outages through a fault proxy (${redisUrl ? 'real Redis' : NO_REDIS})`,
  () => {
    const prefix = testPrefix();
    let admin: Redis;
    let proxy: FaultProxy;
    beforeAll(() => {
      admin = adminClient();
    });
    afterAll(async () => {
      await deleteByPrefix(admin, prefix);
      admin.disconnect();
    });

    async function services(events: string[]) {
      proxy = await startFaultProxy(redisTarget());
      const s = await createRedisServices({
        redisUrl: redisUrlVia(proxy.port),
        keyPrefix: prefix,
        commandTimeoutMs: COMMAND_TIMEOUT_MS,
        probeIntervalMs: 100,
        onDegraded: (reason) => events.push(`degraded: ${reason}`),
        onRecovered: () => events.push('recovered'),
      });
      expect(s.health?.degraded).toBe(false);
      return s;
    }

    async function until(check: () => boolean, ms: number): Promise<void> {
      const end = performance.now() + ms;
      while (!check()) {
        if (performance.now() > end) throw new Error('condition not met in time');
        await sleep(10);
      }
    }

    test('a timeout caused by this process stalling, not by Redis, is not an outage', async () => {
      const events: string[] = [];
      const s = await createRedisServices({
        redisUrl: redisUrl!,
        keyPrefix: prefix,
        commandTimeoutMs: COMMAND_TIMEOUT_MS,
        onDegraded: (reason) => events.push(reason),
      });
      try {
        const pending = s.health!.run(
          () => s.redis!.get(`${prefix}stall`).then(() => 'redis'),
          () => 'fallback',
        );
        // The event loop blocked past the command timeout (a company compiling): the answer is on
        // the socket, but the timer fires first.
        const until = performance.now() + COMMAND_TIMEOUT_MS * 3;
        while (performance.now() < until) {
          // busy
        }
        expect(await pending).toBe('fallback');
        await sleep(COMMAND_TIMEOUT_MS * 3);
        expect(events).toEqual([]);
        expect(s.health?.degraded).toBe(false);
      } finally {
        await s.close();
      }
    });

    test(
      'severed mid-use: local budgets, no errors, one alert; restored: recovery and catch-up',
      { timeout: 20_000 },
      async () => {
        const events: string[] = [];
        const s = await services(events);
        const redisStore = createRedisBudgetStore({ redis: admin, keyPrefix: prefix });
        const key = 'budget:tier3:severed-check:2026-11';
        const engine = runEngine(s, 'severed');
        let run: Awaited<ReturnType<typeof engine.stop>>;
        try {
          // Healthy: 300 of 1000 settled in Redis.
          const first = await s.budgets.reserve(key, 300, 1000);
          await s.budgets.settle(first!, 300);
          expect(await redisStore.spent(key)).toBe(300);
          await sleep(100);

          proxy.sever();
          await until(() => events.length > 0, 2000);
          // Local mode: a quarter of what was left (700) → 175.
          const local = await s.budgets.reserve(key, 100, 1000);
          expect(local).not.toBeNull();
          expect(await s.budgets.reserve(key, 100, 1000)).toBeNull();
          await s.budgets.settle(local!, 80);
          expect(await s.budgets.spent(key)).toBe(380);
          const rotationDuring = await s.rotation.next('fallback:severed:technicalIssue');
          expect(typeof rotationDuring).toBe('number');
          await sleep(300); // more engine turns during the outage

          proxy.restore();
          await until(() => events.includes('recovered'), 5000);
          // The spend made while degraded reached Redis.
          expect(await redisStore.spent(key)).toBe(380);
          expect(await s.budgets.spent(key)).toBe(380);
        } finally {
          run = await engine.stop();
          await s.close();
          await proxy.close();
        }
        expect(run.errors).toEqual([]);
        expect(run.turns).toBeGreaterThan(10);
        expect(run.slowest).toBeLessThan(BOUND_MS);
        expect(events.filter((e) => e.startsWith('degraded'))).toHaveLength(1);
        expect(events.at(-1)).toBe('recovered');
        // Warmup records made during the outage were added to Redis too.
        const day = new Date().toISOString().slice(0, 10);
        const counted = Number(await admin.hget(`${prefix}warmup:{severed}:${day}`, 'triggered|*'));
        // (the last turn's record may still be in flight when the services close)
        expect(counted).toBeGreaterThanOrEqual(run.turns - 1);
      },
    );

    test(
      'blackholed (a hung Redis): calls answer within the command timeout, then recover',
      { timeout: 20_000 },
      async () => {
        const events: string[] = [];
        const s = await services(events);
        const engine = runEngine(s, 'hung');
        let run: Awaited<ReturnType<typeof engine.stop>>;
        try {
          await sleep(100);
          proxy.blackhole();
          await until(() => events.length > 0, 2000);
          const t0 = performance.now();
          for (let i = 0; i < 5; i++) await engineTurn(s, 'hung');
          // Degraded: no call waits on Redis any more.
          expect(performance.now() - t0).toBeLessThan(100);
          const cache = s.configCache({ load: (_kind, id) => Promise.resolve({ id }) });
          expect(await cache.get('company', 'hung')).toEqual({ id: 'hung' });
          await sleep(300);
          proxy.restore();
          await until(() => events.includes('recovered'), 5000);
        } finally {
          run = await engine.stop();
          await s.close();
          await proxy.close();
        }
        expect(run.errors).toEqual([]);
        expect(run.slowest).toBeLessThan(BOUND_MS);
        expect(events.filter((e) => e.startsWith('degraded'))).toHaveLength(1);
      },
    );
  },
);
