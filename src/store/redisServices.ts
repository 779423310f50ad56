/**
 * The shared state an engine needs (budgets, fallback rotation, warmup statistics, config cache
 * invalidation), from Redis when REDIS_URL is set and in process otherwise. With Redis, every piece
 * is wrapped so an outage degrades to local fallbacks instead of failing calls; the engine starts
 * even when Redis is unreachable (degraded from the first moment, recovering when Redis answers).
 */
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { createLocalBudgetStore } from '../cost/budgetsLocal.ts';
import type { SyncableBudgetStore } from '../cost/budgetsLocal.ts';
import { createRedisBudgetStore } from '../cost/redisBudgets.ts';
import type { Logger } from '../observability/logger.ts';
import { createMemoryRotationStore } from '../routing/fallbackPicker.ts';
import type { RotationStore } from '../routing/fallbackPicker.ts';
import { createRedisRotationStore } from '../routing/redisRotation.ts';
import { createRedisWarmupStats } from '../warmup/redisWarmupStats.ts';
import { createMemoryWarmupStats } from '../warmup/warmupStats.ts';
import type { WarmupStats } from '../warmup/warmupStats.ts';
import { createConfigCache, createMemoryInvalidationBus } from './configCache.ts';
import type { ConfigCache, ConfigCacheOptions, ConfigCacheValues, InvalidationBus } from './configCache.ts';
import { closeRedis, createRedisClient, DEFAULT_CONNECT_TIMEOUT_MS, waitForRedis } from './redisClient.ts';
import { createRedisInvalidationBus } from './redisInvalidationBus.ts';
import { createResilientBudgetStore } from './resilientBudgets.ts';
import { createRedisHealth } from './resilientRedis.ts';
import type { RedisHealth } from './resilientRedis.ts';
import { createResilientRotationStore } from './resilientRotation.ts';
import { createResilientWarmupStats } from './resilientWarmupStats.ts';

export interface RedisServicesOptions {
  /** EnvConfig.redisUrl; undefined = everything in process. */
  readonly redisUrl: string | undefined;
  readonly log?: Logger;
  /** Alert hook, once per Redis outage. */
  readonly onDegraded?: (reason: string) => void;
  readonly onRecovered?: () => void;
  /** Budget share per instance while Redis is down (see resilientBudgets.ts). */
  readonly localShare?: number;
  readonly keyPrefix?: string;
  readonly commandTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  readonly probeIntervalMs?: number;
}

export type CacheOptions = Omit<ConfigCacheOptions, 'redis' | 'health' | 'bus' | 'keyPrefix' | 'log'>;

export interface RedisServices {
  readonly mode: 'redis' | 'memory';
  readonly budgets: SyncableBudgetStore;
  readonly rotation: RotationStore;
  readonly stats: WarmupStats;
  readonly bus: InvalidationBus;
  /** null in memory mode. */
  readonly health: RedisHealth | null;
  /** The command connection (null in memory mode), for a readiness check. */
  readonly redis: Redis | null;
  /** A config cache on this state's Redis, health and bus. */
  configCache<M extends ConfigCacheValues = ConfigCacheValues>(options: CacheOptions): ConfigCache<M>;
  close(): Promise<void>;
}

/**
 * Budgets, rotation, warmup statistics and the invalidation bus for one engine: Redis-backed and
 * resilient with `redisUrl`, in process without. Waits at most `connectTimeoutMs` for Redis.
 */
export async function createRedisServices(options: RedisServicesOptions): Promise<RedisServices> {
  const log = options.log ?? pino({ level: 'silent' });
  const keyPrefix = options.keyPrefix ?? '';
  if (options.redisUrl === undefined) {
    const bus = createMemoryInvalidationBus();
    return {
      mode: 'memory',
      budgets: createLocalBudgetStore(),
      rotation: createMemoryRotationStore(),
      stats: createMemoryWarmupStats(),
      bus,
      health: null,
      redis: null,
      configCache: (o) => createConfigCache({ ...o, bus, log }),
      close: () => bus.close(),
    };
  }

  const redis = createRedisClient(options.redisUrl, {
    log,
    name: 'switchboard',
    ...(options.commandTimeoutMs === undefined ? {} : { commandTimeoutMs: options.commandTimeoutMs }),
    ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }),
  });
  const subscriber = createRedisClient(options.redisUrl, {
    log,
    name: 'switchboard-sub',
    subscriber: true,
  });
  const health = createRedisHealth({
    redis,
    log,
    ...(options.onDegraded ? { onDegraded: options.onDegraded } : {}),
    ...(options.onRecovered ? { onRecovered: options.onRecovered } : {}),
    ...(options.probeIntervalMs === undefined ? {} : { probeIntervalMs: options.probeIntervalMs }),
  });
  if (!(await waitForRedis(redis, options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS))) {
    health.report(new Error('redis not reachable at start'));
  }
  const bus = createRedisInvalidationBus({ publisher: redis, subscriber, keyPrefix, log });
  return {
    mode: 'redis',
    budgets: createResilientBudgetStore({
      store: createRedisBudgetStore({ redis, keyPrefix }),
      health,
      log,
      ...(options.localShare === undefined ? {} : { localShare: options.localShare }),
    }),
    rotation: createResilientRotationStore({ store: createRedisRotationStore({ redis, keyPrefix }), health }),
    stats: createResilientWarmupStats({
      store: createRedisWarmupStats({ redis, keyPrefix, log, onError: (err) => health.report(err) }),
      health,
      log,
    }),
    bus,
    health,
    redis,
    configCache: (o) => createConfigCache({ ...o, redis, health, bus, keyPrefix, log }),
    async close() {
      health.close();
      await bus.close();
      closeRedis(redis);
    },
  };
}
