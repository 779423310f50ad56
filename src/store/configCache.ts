/**
 * Configuration reads for live calls without a database round trip: an in-process layer, then
 * Redis (`company:{id}` 300 s, `templates:{id}` 600 s, `number:{e164}` 300 s), then the loader
 * (Postgres). A write calls invalidate(), which deletes the Redis copy and publishes on the
 * invalidation bus so every instance drops its in-process copy at once.
 *
 * The in-process layer keeps entries 60 s at most: that bounds how stale an instance can be if it
 * missed an invalidation (its subscriber was reconnecting), and a reconnect drops the whole layer.
 * Concurrent misses for one key share one load. When the loader fails, an expired in-process copy
 * is served if there is one (better an old greeting than a failed call).
 */
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import type { Logger } from '../observability/logger.ts';
import type { RedisHealth } from './resilientRedis.ts';

export type ConfigCacheKind = 'company' | 'templates' | 'number';

/** Redis TTLs per kind (seconds). */
export const CONFIG_CACHE_TTL_SECONDS: Readonly<Record<ConfigCacheKind, number>> = {
  company: 300,
  templates: 600,
  number: 300,
};
/** Upper bound on the in-process layer's age (seconds). */
export const LOCAL_TTL_SECONDS = 60;
/** Unknown ids (a number nobody owns) are remembered this long, so spam calls do not hit the database. */
export const NEGATIVE_TTL_SECONDS = 30;

export interface Invalidation {
  readonly kind: ConfigCacheKind;
  readonly id: string;
}

/** Carries invalidations to every instance's cache. */
export interface InvalidationBus {
  publish(message: Invalidation): Promise<void>;
  subscribe(listener: (message: Invalidation) => void): () => void;
  /** Messages may have been missed (subscriber reconnected): caches drop their in-process layer. */
  onResync(listener: () => void): () => void;
  close(): Promise<void>;
}

/** The embedded default: one process, so a bus is a set of listeners. */
export function createMemoryInvalidationBus(): InvalidationBus {
  const listeners = new Set<(message: Invalidation) => void>();
  return {
    publish(message) {
      for (const l of listeners) l(message);
      return Promise.resolve();
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    onResync() {
      return () => undefined;
    },
    close() {
      listeners.clear();
      return Promise.resolve();
    },
  };
}

/** What a kind's value is; the default leaves values untyped. */
export type ConfigCacheValues = Record<ConfigCacheKind, unknown>;

export interface ConfigCacheOptions {
  /** Reads the source of truth; null when there is no such id. Values must survive JSON. */
  load(kind: ConfigCacheKind, id: string): Promise<unknown>;
  /** Rebuilds a value read back from Redis (JSON) into what callers expect, e.g. parseCompany. */
  decode?: (kind: ConfigCacheKind, json: unknown) => unknown;
  /** The shared layer; without it the cache is in-process only. */
  readonly redis?: Redis;
  /** Skips Redis while it is down; without it every Redis error is just a miss. */
  readonly health?: RedisHealth;
  readonly bus?: InvalidationBus;
  readonly ttlSeconds?: Partial<Record<ConfigCacheKind, number>>;
  readonly localTtlSeconds?: number;
  readonly negativeTtlSeconds?: number;
  readonly keyPrefix?: string;
  readonly maxLocalEntries?: number;
  readonly log?: Logger;
  readonly now?: () => number;
}

export interface ConfigCacheStats {
  readonly localHits: number;
  readonly sharedHits: number;
  readonly loads: number;
  readonly invalidations: number;
}

export interface ConfigCache<M extends ConfigCacheValues = ConfigCacheValues> {
  /** The value, or null when the loader knows no such id. Rejects only if the loader does and no copy exists. */
  get<K extends ConfigCacheKind>(kind: K, id: string): Promise<M[K] | null>;
  /** After a write to the source of truth: drops the Redis copy and every instance's in-process copy. */
  invalidate(kind: ConfigCacheKind, id: string): Promise<void>;
  stats(): ConfigCacheStats;
  close(): void;
}

interface Entry {
  readonly value: unknown;
  readonly expiresAt: number;
}

/** A two-layer config cache (in-process, then Redis when given) in front of `load`. */
export function createConfigCache<M extends ConfigCacheValues = ConfigCacheValues>(
  options: ConfigCacheOptions,
): ConfigCache<M> {
  const log = options.log ?? pino({ level: 'silent' });
  const now = options.now ?? Date.now;
  const prefix = options.keyPrefix ?? '';
  const ttl = { ...CONFIG_CACHE_TTL_SECONDS, ...options.ttlSeconds };
  const localTtl = options.localTtlSeconds ?? LOCAL_TTL_SECONDS;
  const negativeTtl = options.negativeTtlSeconds ?? NEGATIVE_TTL_SECONDS;
  const maxLocal = options.maxLocalEntries ?? 10_000;
  const decode = options.decode ?? ((_kind: ConfigCacheKind, json: unknown) => json);
  const { redis, health, bus } = options;

  const local = new Map<string, Entry>();
  const loading = new Map<string, Promise<unknown>>();
  // Bumped by every invalidation of a key, so a load that started before it cannot store its
  // (possibly old) result afterwards.
  const generation = new Map<string, number>();
  const pendingInvalidations = new Set<string>();
  const stats = { localHits: 0, sharedHits: 0, loads: 0, invalidations: 0 };

  const keyOf = (kind: ConfigCacheKind, id: string) => `${kind}:${id}`;
  const redisKey = (key: string) => `${prefix}${key}`;

  const shared = <T>(op: (r: Redis) => Promise<T>, fallback: T): Promise<T> => {
    if (redis === undefined) return Promise.resolve(fallback);
    if (health)
      return health.run(
        () => op(redis),
        () => fallback,
      );
    return op(redis).catch(() => fallback);
  };

  function evict(key: string): void {
    local.delete(key);
    // Later reads start a fresh load instead of joining one that may return the old value.
    loading.delete(key);
    generation.set(key, (generation.get(key) ?? 0) + 1);
  }
  function evictAll(): void {
    for (const key of [...local.keys(), ...loading.keys()]) evict(key);
  }

  function keep(key: string, value: unknown, seconds: number): void {
    if (local.size >= maxLocal) {
      // Map iteration is insertion order: drop the oldest tenth.
      let n = Math.ceil(maxLocal / 10);
      for (const k of local.keys()) {
        if (n-- <= 0) break;
        local.delete(k);
      }
    }
    local.set(key, { value, expiresAt: now() + seconds * 1000 });
  }

  async function fetch(kind: ConfigCacheKind, id: string, key: string): Promise<unknown> {
    const gen = generation.get(key) ?? 0;
    const fresh = () => (generation.get(key) ?? 0) === gen;
    const json = await shared((r) => r.get(redisKey(key)), null);
    if (json !== null) {
      try {
        const parsed = JSON.parse(json) as unknown;
        const value = parsed === null ? null : decode(kind, parsed);
        stats.sharedHits++;
        if (fresh()) keep(key, value, value === null ? Math.min(localTtl, negativeTtl) : localTtl);
        return value;
      } catch (err) {
        log.warn({ key, err: { message: (err as Error).message } }, 'unreadable cached config; reloading');
      }
    }
    stats.loads++;
    const loaded = (await options.load(kind, id)) ?? null;
    if (fresh()) {
      const seconds = loaded === null ? negativeTtl : ttl[kind];
      keep(key, loaded, Math.min(localTtl, seconds));
      void shared((r) => r.set(redisKey(key), JSON.stringify(loaded), 'EX', seconds), null);
    }
    return loaded;
  }

  /** Deletes the shared copy and tells every instance; remembered for later if Redis is down. */
  async function publish(message: Invalidation, key: string): Promise<void> {
    try {
      const deleted = await shared((r) => r.del(redisKey(key)).then(() => true), false);
      await bus?.publish(message);
      // The shared copy is gone only if the DEL ran; otherwise do it again on recovery.
      if (deleted || redis === undefined) pendingInvalidations.delete(key);
      else pendingInvalidations.add(key);
    } catch (err) {
      // Other instances did not hear it: say it again when Redis is back.
      pendingInvalidations.add(key);
      log.warn({ key, err: { message: (err as Error).message } }, 'config invalidation not published');
    }
  }

  const unsubscribe = bus?.subscribe((message) => evict(keyOf(message.kind, message.id)));
  const unresync = bus?.onResync(evictAll);
  // Runs before health reports Redis usable again, so it talks to Redis directly; a failure
  // keeps the outage open and this runs again on the next probe.
  const unrecover = health?.onRecovery(async () => {
    evictAll();
    for (const key of [...pendingInvalidations]) {
      const [kind, ...rest] = key.split(':');
      await redis?.del(redisKey(key));
      await bus?.publish({ kind: kind as ConfigCacheKind, id: rest.join(':') });
      pendingInvalidations.delete(key);
    }
  });

  return {
    async get<K extends ConfigCacheKind>(kind: K, id: string): Promise<M[K] | null> {
      const key = keyOf(kind, id);
      const entry = local.get(key);
      if (entry !== undefined && entry.expiresAt > now()) {
        stats.localHits++;
        return entry.value;
      }
      let p = loading.get(key);
      if (p === undefined) {
        const started: Promise<unknown> = fetch(kind, id, key).finally(() => {
          if (loading.get(key) === started) loading.delete(key);
        });
        loading.set(key, (p = started));
      }
      try {
        return await p;
      } catch (err) {
        const stale = local.get(key);
        if (stale === undefined) throw err;
        log.warn({ key, err: { message: (err as Error).message } }, 'config load failed; serving stale copy');
        return stale.value;
      }
    },
    async invalidate(kind, id) {
      const key = keyOf(kind, id);
      stats.invalidations++;
      evict(key);
      await publish({ kind, id }, key);
    },
    stats: () => ({ ...stats }),
    close() {
      unsubscribe?.();
      unresync?.();
      unrecover?.();
    },
  };
}
