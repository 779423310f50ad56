/**
 * Rotation that never fails a call: the shared Redis counter while it answers, an in-process one
 * while it does not (rotation per instance is still rotation; only cross-instance order is lost).
 */
import { createMemoryRotationStore } from '../routing/fallbackPicker.ts';
import type { RotationStore } from '../routing/fallbackPicker.ts';
import type { RedisHealth } from './resilientRedis.ts';

export interface ResilientRotationStoreOptions {
  readonly store: RotationStore;
  readonly health: RedisHealth;
}

/** Wraps a shared rotation store with an in-process fallback; never rejects. */
export function createResilientRotationStore(options: ResilientRotationStoreOptions): RotationStore {
  const local = createMemoryRotationStore();
  return {
    async next(key) {
      try {
        return await options.health.run(
          () => options.store.next(key),
          () => local.next(key),
        );
      } catch {
        return 0;
      }
    },
  };
}
