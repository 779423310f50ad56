/**
 * A deliberately racy budget store (read, decide, then INCRBY: three separate commands), kept only
 * to show that the two-process test catches a store that is not atomic.
 */
import type { Redis } from 'ioredis';
import type { BudgetStore } from '../../src/cost/budgets.ts';

export function createNaiveBudgetStore(redis: Redis, keyPrefix: string): BudgetStore {
  const k = (key: string) => ({ spent: `${keyPrefix}${key}:spent`, reserved: `${keyPrefix}${key}:reserved` });
  return {
    async reserve(key, micros, limitMicros) {
      const { spent, reserved } = k(key);
      const [s, r] = await redis.mget(spent, reserved);
      if (Number(s ?? 0) + Number(r ?? 0) + micros > limitMicros) return null;
      await redis.incrby(reserved, micros);
      return { key, micros };
    },
    async settle(reservation, spentMicros) {
      const { spent, reserved } = k(reservation.key);
      await redis.incrby(reserved, -reservation.micros);
      await redis.incrby(spent, spentMicros);
    },
    async spent(key) {
      return Number((await redis.get(k(key).spent)) ?? 0);
    },
  };
}
