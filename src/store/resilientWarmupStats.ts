/**
 * Warmup statistics that never fail a call: Redis while it answers; while it does not, records are
 * counted in process (and added to Redis when it returns) and hit rates are the last answer Redis
 * gave for that query plus what was counted locally since.
 */
import type { Logger } from '../observability/logger.ts';
import type { RedisWarmupStats, WarmupCount, WarmupField } from '../warmup/redisWarmupStats.ts';
import { warmupDay, warmupFields, warmupQueryFields, warmupWindow } from '../warmup/redisWarmupStats.ts';
import type { HitRate, WarmupStats } from '../warmup/warmupStats.ts';
import type { RedisHealth } from './resilientRedis.ts';

export interface ResilientWarmupStatsOptions {
  readonly store: RedisWarmupStats;
  readonly health: RedisHealth;
  readonly log?: Logger;
}

export interface ResilientWarmupStats extends WarmupStats {
  /** Counts recorded locally and not yet added to Redis. */
  unsynced(): WarmupCount[];
  flush(): Promise<void>;
}

/** Wraps Redis warmup statistics with local counting during outages and catch-up after. */
export function createResilientWarmupStats(options: ResilientWarmupStatsOptions): ResilientWarmupStats {
  const { store, health } = options;
  const pending = new Map<string, WarmupCount>();
  const lastKnown = new Map<string, HitRate>();
  let flushing: Promise<void> | null = null;

  function countLocally(companyId: string, category: string | null, now: Date, field: WarmupField) {
    const day = warmupDay(now);
    for (const f of new Set(warmupFields(field, category))) {
      const id = `${companyId}\u0000${day}\u0000${f}`;
      const c = pending.get(id);
      pending.set(id, { companyId, day, field: f, n: (c?.n ?? 0) + 1 });
    }
  }

  function localRate(companyId: string, days: number, now: Date, category: string | null | undefined) {
    const [t, u] = warmupQueryFields(category);
    let triggered = 0;
    let used = 0;
    for (const day of warmupWindow(now, days)) {
      triggered += pending.get(`${companyId}\u0000${day}\u0000${t}`)?.n ?? 0;
      used += pending.get(`${companyId}\u0000${day}\u0000${u}`)?.n ?? 0;
    }
    return { triggered, used };
  }

  const record = (field: WarmupField) => (companyId: string, category: string | null, now: Date) => {
    if (health.degraded) return countLocally(companyId, category, now, field);
    void health
      .run(
        () => store.increment(companyId, category, now, field),
        () => countLocally(companyId, category, now, field),
      )
      .catch(() => undefined);
  };

  async function flush(): Promise<void> {
    if (flushing) return flushing;
    const batch = [...pending.entries()];
    if (batch.length === 0) return;
    flushing = (async () => {
      await store.addCounts(batch.map(([, c]) => c));
      for (const [id, c] of batch) {
        const left = (pending.get(id)?.n ?? 0) - c.n;
        if (left > 0) pending.set(id, { ...c, n: left });
        else pending.delete(id);
      }
    })().finally(() => {
      flushing = null;
    });
    return flushing;
  }

  health.onRecovery(flush);

  return {
    recordTriggered: record('triggered'),
    recordUsed: record('used'),
    async hitRate(companyId, days, now, category) {
      const query = `${companyId}\u0000${days}\u0000${category === undefined ? '\u0001' : (category ?? '\u0002')}`;
      const plusLocal = (r: HitRate): HitRate => {
        const l = localRate(companyId, days, now, category);
        return { triggered: r.triggered + l.triggered, used: r.used + l.used };
      };
      try {
        return await health.run(
          async () => {
            const r = await store.hitRate(companyId, days, now, category);
            if (lastKnown.size > 10_000) lastKnown.clear();
            lastKnown.set(query, r);
            return plusLocal(r);
          },
          () => plusLocal(lastKnown.get(query) ?? { triggered: 0, used: 0 }),
        );
      } catch {
        return { triggered: 0, used: 0 };
      }
    },
    unsynced: () => [...pending.values()],
    flush,
  };
}
