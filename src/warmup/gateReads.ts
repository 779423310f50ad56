/**
 * The warmup gate's reads (today's warmup spend, the 7-day hit rates) served from memory when the
 * stores are remote. The gate runs on every turn that Tier 1 does not answer, before Tier 2 and the
 * warmup start, so a Redis round trip there is paid by the caller — and, worse, an I/O wait exposes
 * the turn to everything else queued on the event loop. Neither read needs to be exact:
 *
 * - the spend read only lets the gate skip a warmup early; the warmup's own reservation (tier3Llm,
 *   atomic in Redis) is what enforces the daily budget, so a read a second old can at most let a
 *   doomed warmup be refused there;
 * - hit rates over seven days do not move in a second.
 *
 * So each value is served from memory and refreshed in the background once it is older than
 * `refreshAfterMs`; only a value older than `maxStaleMs` (or never read) is waited for.
 */
import type { BudgetStore } from '../cost/budgets.ts';
import type { HitRate, WarmupStats } from './warmupStats.ts';

export interface GateReads {
  readonly budgets: Pick<BudgetStore, 'spent'>;
  readonly stats: Pick<WarmupStats, 'hitRate'>;
}

export interface GateReadsOptions {
  /** A value older than this is refreshed in the background (500 ms). */
  readonly refreshAfterMs?: number;
  /** A value older than this is not served; the read waits for the store (5000 ms). */
  readonly maxStaleMs?: number;
  /** Entries kept (10 000; the oldest go first). */
  readonly maxEntries?: number;
  readonly now?: () => number;
}

interface Entry<T> {
  value: T;
  at: number;
  refreshing: boolean;
}

/** Stale-while-revalidate reads in front of the budget and statistics stores. */
export function cachedGateReads(
  budgets: Pick<BudgetStore, 'spent'>,
  stats: Pick<WarmupStats, 'hitRate'>,
  options: GateReadsOptions = {},
): GateReads {
  const refreshAfterMs = options.refreshAfterMs ?? 500;
  const maxStaleMs = options.maxStaleMs ?? 5000;
  const maxEntries = options.maxEntries ?? 10_000;
  const now = options.now ?? Date.now;
  const entries = new Map<string, Entry<unknown>>();

  async function read<T>(key: string, load: () => Promise<T>): Promise<T> {
    const entry = entries.get(key) as Entry<T> | undefined;
    const age = entry === undefined ? Infinity : now() - entry.at;
    if (entry !== undefined && age <= maxStaleMs) {
      if (age > refreshAfterMs && !entry.refreshing) {
        entry.refreshing = true;
        // After this turn has moved on: even sending a command costs some CPU.
        setImmediate(() => {
          load().then(
            (value) => entries.set(key, { value, at: now(), refreshing: false }),
            () => (entry.refreshing = false),
          );
        });
      }
      return entry.value;
    }
    const value = await load();
    if (entries.size >= maxEntries) {
      // Map order is insertion order: the oldest tenth goes.
      let n = Math.ceil(maxEntries / 10);
      for (const k of entries.keys()) {
        if (n-- <= 0) break;
        entries.delete(k);
      }
    }
    entries.set(key, { value, at: now(), refreshing: false });
    return value;
  }

  return {
    budgets: { spent: (key) => read(`spent\u0000${key}`, () => budgets.spent(key)) },
    stats: {
      // The day is part of the key: a window that slides at midnight is a new read.
      hitRate: (companyId, days, at, category) =>
        read<HitRate>(
          `hit\u0000${companyId}\u0000${days}\u0000${at.toISOString().slice(0, 10)}\u0000${category === undefined ? '\u0001' : (category ?? '\u0002')}`,
          () => stats.hitRate(companyId, days, at, category),
        ),
    },
  };
}
