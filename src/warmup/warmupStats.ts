/**
 * Warmup hit-rate statistics (used / triggered) per company and category, in UTC-day buckets so a
 * 7-day window slides. In memory here; the shared Redis version implements the same interface.
 */

export interface HitRate {
  readonly triggered: number;
  readonly used: number;
}

export interface WarmupStats {
  recordTriggered(companyId: string, category: string | null, now: Date): void;
  recordUsed(companyId: string, category: string | null, now: Date): void;
  /** Totals over the last `days` UTC days including today; `category` narrows to one category. */
  hitRate(companyId: string, days: number, now: Date, category?: string | null): Promise<HitRate>;
}

const DAY_MS = 86_400_000;

export function createMemoryWarmupStats(): WarmupStats {
  // key: company|day|category ('*' = all)
  const counts = new Map<string, { triggered: number; used: number }>();
  const bump = (companyId: string, category: string | null, now: Date, field: 'triggered' | 'used') => {
    const day = now.toISOString().slice(0, 10);
    for (const c of ['*', category ?? '(none)']) {
      const key = `${companyId}|${day}|${c}`;
      const entry = counts.get(key) ?? { triggered: 0, used: 0 };
      entry[field] += 1;
      counts.set(key, entry);
    }
  };
  return {
    recordTriggered: (companyId, category, now) => bump(companyId, category, now, 'triggered'),
    recordUsed: (companyId, category, now) => bump(companyId, category, now, 'used'),
    hitRate(companyId, days, now, category) {
      let triggered = 0;
      let used = 0;
      const c = category === undefined ? '*' : (category ?? '(none)');
      for (let i = 0; i < days; i++) {
        const day = new Date(now.getTime() - i * DAY_MS).toISOString().slice(0, 10);
        const entry = counts.get(`${companyId}|${day}|${c}`);
        if (entry) {
          triggered += entry.triggered;
          used += entry.used;
        }
      }
      return Promise.resolve({ triggered, used });
    },
  };
}
