/**
 * Fallback-line rotation shared by every instance: one INCR per pick on `fallback:{company}:{kind}`
 * (the key the picker passes), so consecutive callers across instances hear the lines in turn.
 * The counters are tiny and few (companies × fallback kinds), so they do not expire.
 */
import type { Redis } from 'ioredis';
import type { RotationStore } from './fallbackPicker.ts';

export interface RedisRotationStoreOptions {
  readonly redis: Redis;
  /** Prepended to every key (tests use a random one). */
  readonly keyPrefix?: string;
}

/** Rejects when Redis does; wrap with createResilientRotationStore for the engine. */
export function createRedisRotationStore(options: RedisRotationStoreOptions): RotationStore {
  const prefix = options.keyPrefix ?? '';
  return {
    async next(key) {
      // INCR counts from 1; the interface counts from 0.
      return (await options.redis.incr(`${prefix}${key}`)) - 1;
    },
  };
}
