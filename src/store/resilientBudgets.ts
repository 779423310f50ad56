/**
 * The budget store the engine uses with Redis: Redis while it answers, a conservative local budget
 * while it does not, and never an exception to the caller.
 *
 * While Redis is unreachable each instance spends from its own allowance per key:
 *   allowance = floor((limit − last known spent − last known reserved) × localShare)
 * with localShare = 1 / the number of instances that may run (default 1/4). If every instance does
 * the same, the outage cannot spend more than what was left; with more instances than assumed the
 * overspend is bounded by (instances × localShare − 1) × what was left. A key never seen from Redis
 * (start-up during an outage, a new period) gets limit × localShare, unless seed() told us more.
 *
 * Spend settled while degraded is kept and added to Redis when it answers again; reservations held
 * in Redis when it went away are released there by their TTL.
 */
import { pino } from 'pino';
import type { BudgetStore, Reservation } from '../cost/budgets.ts';
import { createLocalBudgetStore } from '../cost/budgetsLocal.ts';
import type { ReconcileResult, SyncableBudgetStore } from '../cost/budgetsLocal.ts';
import type { RedisBudgetStore } from '../cost/redisBudgets.ts';
import type { Logger } from '../observability/logger.ts';
import type { RedisHealth } from './resilientRedis.ts';

/** Assumes up to four instances share a budget during an outage. */
export const DEFAULT_LOCAL_SHARE = 0.25;

export interface ResilientBudgetStoreOptions {
  readonly store: RedisBudgetStore;
  readonly health: RedisHealth;
  /** Fraction of what was left that one instance may spend while Redis is unreachable (0–1). */
  readonly localShare?: number;
  readonly log?: Logger;
}

export interface ResilientBudgetStore extends SyncableBudgetStore {
  /** Spend settled locally and not yet added to Redis, per key. */
  unsynced(): ReadonlyMap<string, number>;
  /** Adds the unsynced spend to Redis now (also runs by itself on recovery). */
  flush(): Promise<void>;
}

interface Known {
  spent: number;
  reserved: number;
}

const micros = (n: number) => (Number.isFinite(n) ? Math.max(0, Math.ceil(n)) : 0);

/** Wraps a Redis budget store so calls never fail and never wait on an unreachable Redis. */
export function createResilientBudgetStore(options: ResilientBudgetStoreOptions): ResilientBudgetStore {
  const { store, health } = options;
  const log = options.log ?? pino({ level: 'silent' });
  const share = Math.min(1, Math.max(0, options.localShare ?? DEFAULT_LOCAL_SHARE));
  // What Redis last told us per key: the base of the outage allowance.
  const known = new Map<string, Known>();
  const pending = new Map<string, number>();
  // One local store per outage, so a later outage's allowance is not charged for an earlier one's
  // spend (that spend has been flushed into Redis and is in `known` again).
  let local: BudgetStore = createLocalBudgetStore();
  let allowances = new Map<string, { limit: number; allowance: number }>();
  const localOrigin = new WeakMap<Reservation, BudgetStore>();
  let flushing: Promise<void> | null = null;

  const remember = (key: string, spent: number, reserved: number) => {
    if (known.size > 10_000 && !known.has(key)) known.clear();
    known.set(key, { spent, reserved });
  };
  const addPending = (key: string, amount: number) => {
    if (amount > 0) pending.set(key, (pending.get(key) ?? 0) + amount);
  };

  function allowanceFor(key: string, limit: number): number {
    const cached = allowances.get(key);
    if (cached !== undefined && cached.limit === limit) return cached.allowance;
    const k = known.get(key);
    const left = Math.max(0, limit - (k ? k.spent + k.reserved : 0) - (pending.get(key) ?? 0));
    const allowance = Math.floor(left * share);
    allowances.set(key, { limit, allowance });
    log.warn({ key, limitMicros: limit, allowanceMicros: allowance }, 'budget in local mode');
    return allowance;
  }

  async function reserveLocally(key: string, amount: number, limit: number): Promise<Reservation | null> {
    const r = await local.reserve(key, amount, allowanceFor(key, limit));
    if (r !== null) localOrigin.set(r, local);
    return r;
  }

  async function flush(): Promise<void> {
    if (flushing) return flushing;
    flushing = (async () => {
      const batch = [...pending];
      await Promise.all(
        batch.map(async ([key, amount]) => {
          const spent = await store.addSpent(key, amount);
          const left = (pending.get(key) ?? 0) - amount;
          if (left > 0) pending.set(key, left);
          else pending.delete(key);
          const k = known.get(key);
          remember(key, spent, k?.reserved ?? 0);
        }),
      );
    })().finally(() => {
      flushing = null;
    });
    return flushing;
  }

  // Reset only once the outage's spend is in Redis: a failed flush means the outage goes on, and
  // its allowance must not start over.
  health.onRecovery(async () => {
    await flush();
    local = createLocalBudgetStore();
    allowances = new Map();
  });

  return {
    async reserve(key, amount, limit) {
      const m = micros(amount);
      const l = micros(limit);
      try {
        return await health.run(
          async () => {
            const outcome = await store.reserveDetailed(key, m, l);
            remember(key, outcome.spent, outcome.reserved);
            return outcome.reservation;
          },
          () => reserveLocally(key, m, l),
        );
      } catch (err) {
        // Only a local-store bug lands here; refusing spends nothing, which is the safe answer.
        log.error({ key, err: { message: (err as Error).message } }, 'budget reserve failed');
        return null;
      }
    },
    async settle(reservation, spentMicros) {
      const actual = micros(spentMicros);
      try {
        const owner = localOrigin.get(reservation);
        if (owner !== undefined) {
          await owner.settle(reservation, actual);
          addPending(reservation.key, actual);
          if (!health.degraded) void flush().catch((err: unknown) => health.report(err));
          return;
        }
        await health.run(
          async () => {
            const { spent } = await store.settleDetailed(reservation, actual);
            const k = known.get(reservation.key);
            remember(reservation.key, spent, Math.max(0, (k?.reserved ?? 0) - reservation.micros));
          },
          () => addPending(reservation.key, actual),
        );
      } catch (err) {
        log.error({ key: reservation.key, err: { message: (err as Error).message } }, 'budget settle failed');
      }
    },
    async spent(key) {
      try {
        const fromRedis = await health.run(
          async () => {
            const spent = await store.spent(key);
            remember(key, spent, known.get(key)?.reserved ?? 0);
            return spent;
          },
          () => known.get(key)?.spent ?? 0,
        );
        return fromRedis + (pending.get(key) ?? 0);
      } catch {
        return (known.get(key)?.spent ?? 0) + (pending.get(key) ?? 0);
      }
    },
    async seed(key, spentMicros) {
      const m = micros(spentMicros);
      const k = known.get(key);
      if (k === undefined || k.spent < m) remember(key, m, k?.reserved ?? 0);
      await health.run(
        () => store.seed(key, m),
        () => undefined,
      );
    },
    async reconcile(key, spentMicros): Promise<ReconcileResult> {
      const m = micros(spentMicros);
      const k = known.get(key);
      const result = await health.run(
        () => store.reconcile(key, m),
        () => ({ before: k?.spent ?? null, after: Math.max(k?.spent ?? 0, m) }),
      );
      remember(key, result.after, k?.reserved ?? 0);
      return result;
    },
    unsynced: () => pending,
    flush,
  };
}
